"""Benchmark: apply → Ready of a cold Agent on the kind cluster, step by step, per egress mode;
and (--first-token) the first token after apply, next to the first token after a wake.

    python bench/startup/bench_startup.py [--runs 10] [--modes cni,init-container]
    python bench/startup/bench_startup.py --first-token [--runs 10]

Needs the cluster `make dev` made. For each mode in turn it sets the release's
operator.sandboxEgressMode (helm upgrade --reuse-values; the mode the release had is put back at
the end), then applies the example llama.cpp Agent (tiny model) --runs times, one at a time, in a
namespace of its own (no Pod Security level enforced, so both modes run there), and deletes it
after each run. The example Agent `coder` is suspended meanwhile, so the bench's Agent has the
node to itself as a new user's would, and resumed at the end.

apply → Ready is timed here (polled every 50 ms); the steps in between come from the Pod's own
timestamps, which the API server keeps in whole seconds. Prints one table: p50 and p99 of each
step per mode, and the ratio of the modes' p50s (the first mode over the second).

--first-token times what a user waits for, through the gateway's NodePort as `paddock chat` does,
in the release's current mode: a cold Agent (apply, open a session, send a message: the first
token), then the same Agent with spec.lifecycle.idleAfter 10s, --runs times: wait until it is
suspended for being idle, send a message in a new session, time its first token (and the Agent's
Ready). Prints p50 and p99 of each, and the wake/cold ratio of the p50s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paddock.kubeobj import timestamp
from paddock_gateway.client import GatewayClient
from paddock_operator.status import container_status
from paddock_testing.proc import script_exports

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "paddock-bench"
SYSTEM_NAMESPACE = "paddock-system"
RELEASE = "paddock"
EXAMPLE = ("default", "coder")
CHART = REPO / "charts" / "paddock"
Obj = dict[str, Any]

STEPS = (
    "pod created",
    "pod scheduled",
    "egress set up",
    "vault started",
    "harness started",
    "pod ready",
    "agent ready",
)


def tools() -> dict[str, str]:
    """kubectl and helm as make dev built them (hack/kube-binaries.sh, kind/tools.sh)."""
    return {
        **script_exports(REPO / "hack" / "kube-binaries.sh"),
        **script_exports(REPO / "kind" / "tools.sh"),
    }


@dataclass
class Cluster:
    kubectl_bin: str
    helm_bin: str
    context: str = "kind-paddock"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [self.kubectl_bin, "--context", self.context, *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def get(self, *args: str) -> Obj | None:
        out = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(out) if out else None

    def helm(self, *args: str) -> str:
        return subprocess.run(
            [self.helm_bin, "--kube-context", self.context, *args],
            capture_output=True, text=True, check=True, timeout=900,
        ).stdout  # fmt: skip


def stamp(text: str) -> float:
    return timestamp(text).timestamp()


def condition_time(pod: Obj, kind: str) -> float | None:
    for c in pod.get("status", {}).get("conditions", []):
        if c["type"] == kind and c["status"] == "True":
            return stamp(c["lastTransitionTime"])
    return None


def started(pod: Obj, name: str, *, finished: bool = False) -> float | None:
    state = (container_status(pod, name) or {}).get("state", {})
    if finished:
        return stamp(state["terminated"]["finishedAt"]) if "terminated" in state else None
    for key in ("running", "terminated"):
        if key in state:
            return stamp(state[key]["startedAt"])
    return None


@dataclass
class Run:
    steps: dict[str, float] = field(default_factory=dict)


def one_run(cluster: Cluster, agent: Obj, index: int) -> Run:
    name = f"bench-{index}"
    body = json.loads(json.dumps(agent))
    body["metadata"] = {"name": name, "namespace": NAMESPACE}
    applied = time.time()
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    deadline = time.monotonic() + 600
    while True:
        status = (cluster.get("agent", name, "-n", NAMESPACE) or {}).get("status") or {}
        if status.get("phase") == "Ready":
            ready = time.time()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Agent {name} not Ready after 600 s: {status}")
        time.sleep(0.05)
    pod = cluster.get("pod", f"{name}-sandbox", "-n", NAMESPACE) or {}
    egress = pod["spec"]["initContainers"][0]["name"]
    # The Agent's creation time is whole seconds too: the steps are measured from it, and
    # "agent ready" from the moment of applying.
    created = stamp(
        (cluster.get("agent", name, "-n", NAMESPACE) or {})["metadata"]["creationTimestamp"]
    )
    points = {
        "pod created": stamp(pod["metadata"]["creationTimestamp"]),
        "pod scheduled": condition_time(pod, "PodScheduled"),
        "egress set up": started(pod, egress, finished=True),
        "vault started": started(pod, "vault"),
        "harness started": started(pod, "harness"),
        "pod ready": condition_time(pod, "Ready"),
    }
    run = Run({k: v - created for k, v in points.items() if v is not None})
    run.steps["agent ready"] = ready - applied
    cluster.kubectl("delete", "agent", name, "-n", NAMESPACE, "--wait=true", "--timeout=300s")
    cluster.kubectl(
        "wait", "pod", f"{name}-sandbox", "-n", NAMESPACE, "--for=delete", "--timeout=300s",
        check=False,
    )  # fmt: skip
    return run


def set_mode(cluster: Cluster, mode: str) -> None:
    cluster.helm(
        "upgrade", RELEASE, str(CHART), "-n", SYSTEM_NAMESPACE, "--reuse-values",
        "--set", f"operator.sandboxEgressMode={mode}", "--wait", "--timeout=5m",
    )  # fmt: skip
    cluster.kubectl("rollout", "status", "deployment", "-n", SYSTEM_NAMESPACE, "--timeout=300s")


def current_mode(cluster: Cluster) -> str:
    values = json.loads(
        cluster.helm("get", "values", RELEASE, "-n", SYSTEM_NAMESPACE, "-a", "-o", "json")
    )
    return str(values["operator"]["sandboxEgressMode"])


def suspend_example(cluster: Cluster, suspend: bool) -> None:
    namespace, name = EXAMPLE
    if cluster.get("agent", name, "-n", namespace) is None:
        return
    patch = json.dumps({"spec": {"suspend": suspend}})
    cluster.kubectl("patch", "agent", name, "-n", namespace, "--type=merge", "-p", patch)
    if suspend:
        cluster.kubectl(
            "wait", "pod", f"{name}-sandbox", "-n", namespace, "--for=delete", "--timeout=300s",
            check=False,
        )  # fmt: skip


def prepare(cluster: Cluster) -> Obj:
    """The bench's namespace with the tiny models, and the example Agent to apply."""
    if cluster.get("namespace", NAMESPACE) is None:
        cluster.kubectl("create", "namespace", NAMESPACE)
    models = (REPO / "examples" / "kind" / "models.yaml").read_text()
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=models)
    cluster.kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=complete", "job/paddock-models-tiny",
        "--timeout=300s",
    )  # fmt: skip
    if cluster.get("secret", "github", "-n", NAMESPACE) is None:
        cluster.kubectl(
            "create", "secret", "generic", "github", "-n", NAMESPACE,
            "--from-literal=token=ghp_bench_placeholder_0000000000000000",
        )  # fmt: skip
    import yaml  # noqa: PLC0415 - a dev dependency, only here

    docs = yaml.safe_load_all((REPO / "examples" / "llamacpp-agent.yaml").read_text())
    agent: Obj = next(d for d in docs if d and d["kind"] == "Agent")
    return agent


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(results: dict[str, list[Run]]) -> str:
    modes = list(results)
    head = f"{'step (s from apply)':<20}" + "".join(
        f"{m + ' p50':>20}{m + ' p99':>20}" for m in modes
    )
    if len(modes) == 2:
        head += f"{'p50 ' + modes[0] + '/' + modes[1]:>34}"
    lines = [head]
    for step in STEPS:
        row = f"{step:<20}"
        p50s = []
        for mode in modes:
            values = [r.steps[step] for r in results[mode] if step in r.steps]
            if values:
                p50s.append(statistics.median(values))
                row += f"{p50s[-1]:>20.2f}{quantile(values, 0.99):>20.2f}"
            else:
                row += f"{'-':>20}{'-':>20}"
        if len(p50s) == 2 and p50s[1] > 0:
            row += f"{p50s[0] / p50s[1]:>33.2f}x"
        lines.append(row)
    runs = ", ".join(f"{m}: {len(results[m])} runs" for m in modes)
    lines.append(f"({runs}; steps from the Pod's timestamps, whole seconds; agent ready polled)")
    return "\n".join(lines)


GATEWAY_URL = "http://127.0.0.1:30800"
IDLE_AFTER = "10s"


def gateway_token(cluster: Cluster) -> str:
    """A token of a ServiceAccount of the bench namespace that may talk to its Agents."""
    for args in (
        ("create", "serviceaccount", "bench"),
        ("create", "role", "bench-connect", "--verb=connect", "--resource=agents.paddock.dev"),
        ("create", "rolebinding", "bench-connect", "--role=bench-connect",
         f"--serviceaccount={NAMESPACE}:bench"),
    ):  # fmt: skip
        cluster.kubectl(*args, "-n", NAMESPACE, check=False)  # there from an earlier run
    return cluster.kubectl("create", "token", "bench", "-n", NAMESPACE).strip()


async def first_token(client: GatewayClient) -> float:
    """Seconds from sending a message in a new session to its first token."""
    session = str((await client.create_session())["id"])
    sent = time.monotonic()
    await client.send(session, "Say hello.")
    events = client.events(session, None)
    try:
        async for event in events:
            if event.type == "token":
                return time.monotonic() - sent
            if event.type == "turn_end":
                raise RuntimeError(f"the turn ended without a token: {event.data}")
    finally:
        await events.aclose()  # an open stream counts as use: it would keep the Agent awake
    raise RuntimeError("the event stream ended")


def idle_suspended(cluster: Cluster, name: str) -> bool:
    status = (cluster.get("agent", name, "-n", NAMESPACE) or {}).get("status") or {}
    return status.get("phase") == "Suspended" and "idleSuspendTime" in status


async def first_tokens(cluster: Cluster, agent: Obj, runs: int) -> dict[str, list[float]]:
    """Cold apply → first token, then wake → first token (and → Ready), `runs` times each."""
    token = gateway_token(cluster)
    out: dict[str, list[float]] = {"cold: apply → first token": [], "wake: message → Ready": []}
    out["wake: message → first token"] = []
    for index in range(runs):
        name = f"bench-ft-{index}"
        body = json.loads(json.dumps(agent))
        body["metadata"] = {"name": name, "namespace": NAMESPACE}
        client = GatewayClient([GATEWAY_URL], token, NAMESPACE, name)
        try:
            applied = time.monotonic()
            cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
            waited = await first_token(client)
            out["cold: apply → first token"].append(time.monotonic() - applied)
            print(f"cold {index + 1}: first token after {waited:.2f} s", file=sys.stderr)
        finally:
            await client.aclose()
            cluster.kubectl("delete", "agent", name, "-n", NAMESPACE, "--wait=true")
    name = "bench-wake"
    body = json.loads(json.dumps(agent))
    body["metadata"] = {"name": name, "namespace": NAMESPACE}
    body["spec"]["lifecycle"] = {"idleAfter": IDLE_AFTER}
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(body))
    client = GatewayClient([GATEWAY_URL], token, NAMESPACE, name)
    try:
        for index in range(runs):
            deadline = time.monotonic() + 300
            while not idle_suspended(cluster, name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not suspended for being idle after 300 s")
                await asyncio.sleep(0.2)
            ready = asyncio.create_task(asyncio.to_thread(_ready_after, cluster, name))
            out["wake: message → first token"].append(await first_token(client))
            out["wake: message → Ready"].append(await ready)
            print(f"wake {index + 1}: {out['wake: message → first token'][-1]:.2f} s",
                  file=sys.stderr)  # fmt: skip
    finally:
        await client.aclose()
        cluster.kubectl("delete", "agent", name, "-n", NAMESPACE, "--wait=true")
    return out


def _ready_after(cluster: Cluster, name: str) -> float:
    """Seconds until the Agent is Ready (polled every 50 ms)."""
    started = time.monotonic()
    while (cluster.get("agent", name, "-n", NAMESPACE) or {}).get("status", {}).get(
        "phase"
    ) != "Ready":
        if time.monotonic() - started > 300:
            raise RuntimeError(f"{name} not Ready 300 s after the message")
        time.sleep(0.05)
    return time.monotonic() - started


def first_token_report(results: dict[str, list[float]]) -> str:
    lines = [f"{'path (s)':<32}{'p50':>10}{'p99':>10}{'runs':>6}"]
    for path, values in results.items():
        p50 = statistics.median(values)
        lines.append(f"{path:<32}{p50:>10.2f}{quantile(values, 0.99):>10.2f}{len(values):>6}")
    cold = statistics.median(results["cold: apply → first token"])
    wake = statistics.median(results["wake: message → first token"])
    lines.append(f"{'p50 wake / cold':<32}{wake / cold:>9.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--modes", default="cni,init-container")
    parser.add_argument("--first-token", action="store_true", help="cold and wake first tokens")
    args = parser.parse_args()
    env = tools()
    cluster = Cluster(env["PADDOCK_KUBECTL"], env["PADDOCK_HELM"])
    if args.first_token:
        agent = prepare(cluster)
        suspend_example(cluster, True)
        try:
            tokens = asyncio.run(first_tokens(cluster, agent, args.runs))
        finally:
            suspend_example(cluster, False)
        print(first_token_report(tokens))
        return 0
    had = current_mode(cluster)
    agent = prepare(cluster)
    results: dict[str, list[Run]] = {}
    suspend_example(cluster, True)
    try:
        for mode in args.modes.split(","):
            set_mode(cluster, mode)
            results[mode] = []
            for index in range(args.runs):
                run = one_run(cluster, agent, index)
                results[mode].append(run)
                print(
                    f"{mode} run {index + 1}: Ready in {run.steps['agent ready']:.2f} s",
                    file=sys.stderr,
                )
    finally:
        set_mode(cluster, had)
        suspend_example(cluster, False)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
