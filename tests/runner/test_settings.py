"""The runner's settings refuse what would not work or would not be safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from paddock.sandbox import MODEL_NAME_ENV, MODEL_URL_ENV
from paddock_runner.settings import RunnerSettings

pytestmark = pytest.mark.unit


def test_the_pod_wiring_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MODEL_URL_ENV, "http://127.0.0.1:8080/v1")
    monkeypatch.setenv(MODEL_NAME_ENV, "qwen")
    monkeypatch.setenv("PADDOCK_RUNNER_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("PADDOCK_RUNNER_HARNESS", "command")
    monkeypatch.setenv("PADDOCK_RUNNER_COMMAND", '["claude", "-p", "{message}"]')

    settings = RunnerSettings()

    assert settings.model_url == "http://127.0.0.1:8080/v1"
    assert settings.model == "qwen"
    assert settings.command == ["claude", "-p", "{message}"]
    assert settings.port == 7000


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"workspace": "relative/dir"}, "workspace"),
        ({"workspace": "/does/not/exist"}, "workspace"),
        ({"harness": "command"}, "PADDOCK_RUNNER_COMMAND"),
        ({"command": ["x"]}, "harness is agent"),
        ({"tool_choice": "rm"}, "tool_choice"),
        ({"model_url": "file:///etc/passwd"}, "model_url"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(
    tmp_path: Path, fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RunnerSettings.model_validate({"workspace": tmp_path, **fields})
