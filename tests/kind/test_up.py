"""kind/up.sh loads every image the chart can deploy (pure text: chart values and the script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_up_loads_every_paddock_image_the_chart_names() -> None:
    # kind has no registry: an image the chart names but up.sh does not load never starts there
    # (operator.sandboxEgressMode=cni's DaemonSet runs paddock/cni; without it no sandbox starts).
    values = (REPO / "charts" / "paddock" / "values.yaml").read_text()
    named = set(re.findall(r"\bpaddock/([a-z][a-z0-9-]*)", values))
    up = (REPO / "kind" / "up.sh").read_text()
    (listed,) = re.findall(r"^for name in ([^;]+); do$", up, re.MULTILINE)
    loaded = set(listed.split())
    assert {"operator", "gateway", "vault", "cni", "llama-server", "redis"} <= named
    assert named - loaded == set()
