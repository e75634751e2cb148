"""paddock's wheel, built the way images/build.sh builds it for the images: what ships."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"paddock", "paddock_operator", "paddock_gateway", "paddock_vault", "paddock_runner"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[PurePosixPath]:
    """The files in the wheel, built as images/build.sh builds it (pip, offline, hatchling)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", str(REPO), "-w", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("paddock-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return [PurePosixPath(name) for name in archive.namelist()]


def test_the_wheel_holds_the_core_and_the_components_and_nothing_else(
    wheel_files: list[PurePosixPath],
) -> None:
    tops = {path.parts[0] for path in wheel_files if not path.parts[0].endswith(".dist-info")}
    assert tops == SHIPPED
    assert PurePosixPath("paddock_vault/app.py") in wheel_files


def test_no_test_helper_is_in_the_wheel(wheel_files: list[PurePosixPath]) -> None:
    helpers = [
        str(path)
        for path in wheel_files
        if any(part in {"testing", "testing.py", "paddock_testing"} for part in path.parts)
    ]
    assert helpers == []
