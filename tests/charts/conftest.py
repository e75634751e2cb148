"""The chart as a user meets it: `helm template` with their values, and what helm says back."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from paddock.kubeobj import Obj

CHART = Path(__file__).resolve().parents[2] / "charts" / "paddock"


class HelmError(Exception):
    """helm refused; the message is what it printed."""


class Objects(list[Obj]):
    """What the chart rendered to, with the look-ups tests need."""

    def find(self, kind: str, name: str | None = None) -> Obj:
        """The one object of this kind (and name suffix)."""
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"].endswith(name)]
        assert len(found) == 1, f"{len(found)} {kind} objects named *{name or ''}"
        return found[0]

    def all(self, kind: str) -> list[Obj]:
        """Every object of this kind."""
        return [o for o in self if o["kind"] == kind]

    def pod_specs(self) -> Iterator[tuple[str, Obj]]:
        """(kind/name, Pod spec) of every workload and bare Pod."""
        for o in self:
            where = f"{o['kind']}/{o['metadata']['name']}"
            if o["kind"] == "Pod":
                yield where, o["spec"]
            elif o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                yield where, o["spec"]["template"]["spec"]

    def pod_labels(self) -> dict[str, dict[str, str]]:
        """The labels of each workload's Pods (and of bare Pods), by the workload's name."""
        return {
            o["metadata"]["name"]: (
                o["metadata"] if o["kind"] == "Pod" else o["spec"]["template"]["metadata"]
            )["labels"]
            for o in self
            if o["kind"] in {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job"}
        }

    def env(self, container: Obj) -> dict[str, str]:
        """A container's environment as the kubelet sets it, the chart's Secrets resolved."""
        env: dict[str, str] = {}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.find("Secret", ref["name"])["stringData"][ref["key"]]
        return env


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "Exists" and key not in labels) or (op == "In" and labels.get(key) not in values):
            return False
    return True


@dataclass(frozen=True)
class Chart:
    """Renders the chart with `helm template`, as `helm install` would (hooks included)."""

    helm: str
    workdir: Path
    path: Path = CHART

    def run(self, *args: str, values: Obj | None = None) -> str:
        """helm's stdout for `helm <args> -f <values>`; HelmError with its stderr if it fails."""
        argv = [self.helm, *args]
        if values:
            file = self.workdir / "values.yaml"
            file.write_text(yaml.safe_dump(values))
            argv += ["-f", str(file)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HelmError(done.stderr.strip())
        return done.stdout

    Error = HelmError
    selects = staticmethod(selects)

    def render(self, values: Obj | None = None, *, namespace: str = "paddock-system") -> Objects:
        """Every object the chart renders to (the `helm test` Pod too)."""
        out = self.run("template", "paddock", str(self.path), "-n", namespace, values=values)
        return Objects(d for d in yaml.safe_load_all(out) if d)

    def notes(self, values: Obj | None = None, *, namespace: str = "paddock-system") -> str:
        """NOTES.txt as `helm install` prints it, rendered with no cluster (from a copy of the
        chart where it is the body of a template, since `helm template` skips NOTES.txt)."""
        copy = self.workdir / "notes-chart"
        if not copy.exists():
            shutil.copytree(self.path, copy)
            notes = (copy / "templates" / "NOTES.txt").read_text()
            (copy / "templates" / "notes.yaml").write_text(
                '{{- define "notes" -}}' + notes + "{{- end -}}\n"
                'notes: {{ include "notes" . | toJson }}\n'
            )
        out = self.run(
            "template", "paddock", str(copy), "-n", namespace,
            "--show-only", "templates/notes.yaml", values=values,
        )  # fmt: skip
        text: str = yaml.safe_load(out)["notes"]
        return text


@pytest.fixture
def chart(helm: str, tmp_path: Path) -> Chart:
    """The paddock chart, rendered by the helm built from its Go module."""
    return Chart(helm, tmp_path)
