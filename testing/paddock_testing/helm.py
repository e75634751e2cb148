"""Render the paddock chart with the helm that hack/kube-binaries.sh builds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "paddock"


def render(helm: str, template: str, *, namespace: str, release: str = "paddock") -> list[Any]:
    """The objects one template of the chart renders to, with default values."""
    out = subprocess.run(  # noqa: S603 - our own helm, argv built here
        [helm, "template", release, str(CHART), "--namespace", namespace, "--show-only", template],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]
