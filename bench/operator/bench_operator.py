"""Benchmark: apply Agents to a real kube-apiserver and time how soon the operator makes their Pods.

    python bench/operator/bench_operator.py [--burst 100] [--sustained 200]

Starts etcd + kube-apiserver (+ controller-manager), runs `paddock operator` as a child process,
and watches Pods. Three runs, side by side:
  direct     the same sandbox Pods created straight through the API (no operator): the floor
  burst      --burst Agents applied at once
  sustained  --sustained Agents applied back to back (20 in flight), for Agents/s
Latency is from sending the create to the Pod's ADDED event on a watch. Peak memory is the
operator's VmHWM. Needs the binaries of hack/kube-binaries.sh (found the same way the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from paddock.api.agent import AgentSpec
from paddock.testing.agents import minimal_agent
from paddock.testing.apiserver import ApiServer, ApiServerError, KubeBinaries
from paddock_operator.names import AgentRef
from paddock_operator.render.pod import pod as render_pod
from paddock_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]


def binaries() -> KubeBinaries:
    try:
        return KubeBinaries.from_env()
    except ApiServerError:
        out = subprocess.run(
            [str(REPO / "hack" / "kube-binaries.sh")], capture_output=True, text=True, check=True
        ).stdout
        return KubeBinaries.from_env(dict(re.findall(r"^export (\w+)=(.*)$", out, re.M)))


class Watcher:
    """Records when each sandbox Pod is first seen on a watch."""

    def __init__(self, client: httpx.AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        url = f"/api/v1/namespaces/{self.namespace}/pods"
        params = {"watch": "true", "allowWatchBookmarks": "false"}
        async with self.client.stream("GET", url, params=params, timeout=None) as response:
            self.ready.set()
            async for line in response.aiter_lines():
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED" and name not in self.seen:
                    self.seen[name] = time.perf_counter()

    async def wait(self, names: list[str]) -> None:
        deadline = time.perf_counter() + 300
        while not all(n in self.seen for n in names):
            if time.perf_counter() > deadline:
                missing = [n for n in names if n not in self.seen]
                raise TimeoutError(f"{len(missing)} Pods never appeared, e.g. {missing[:3]}")
            await asyncio.sleep(0.01)


async def create(client: httpx.AsyncClient, url: str, body: Obj) -> float:
    sent = time.perf_counter()
    response = await client.post(url, json=body)
    response.raise_for_status()
    return sent


async def run_batch(
    client: httpx.AsyncClient, watcher: Watcher, bodies: list[tuple[str, str, Obj]], limit: int
) -> tuple[list[float], float]:
    """Create (url, pod name, body) triples, at most limit in flight; latencies (ms) and wall."""
    gate = asyncio.Semaphore(limit)
    sent: dict[str, float] = {}

    async def one(url: str, pod: str, body: Obj) -> None:
        async with gate:
            sent[pod] = await create(client, url, body)

    start = time.perf_counter()
    await asyncio.gather(*(one(*b) for b in bodies))
    names = [pod for _, pod, _ in bodies]
    await watcher.wait(names)
    wall = max(watcher.seen[n] for n in names) - start
    return [(watcher.seen[n] - sent[n]) * 1000 for n in names], wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def bench(
    server: ApiServer, burst: int, sustained: int
) -> list[tuple[str, int, list[float], float]]:
    ca = ssl_context(server)
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(
        base_url=server.url, verify=ca, headers=headers, limits=limits
    ) as c:
        results = []
        for ns in ("direct", "burst", "sustained"):
            (await c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})).raise_for_status()
            secret = {"metadata": {"name": "token"}, "stringData": {"v": "real"}}
            (await c.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)).raise_for_status()
            await wait_default_sa(c, ns)
        # The floor: the operator's own Pod, created directly.
        watcher = Watcher(c, "direct")
        task = asyncio.create_task(watcher.run())
        await watcher.ready.wait()
        spec = AgentSpec.model_validate(minimal_agent("x")["spec"])
        pods = []
        for i in range(burst):
            body = render_pod(
                AgentRef(f"d{i}", "direct", "uid"), spec, OperatorSettings(), {"TOKEN": "s"}
            )
            del body["metadata"]["ownerReferences"]
            pods.append(("/api/v1/namespaces/direct/pods", f"d{i}-sandbox", body))
        latencies, wall = await run_batch(c, watcher, pods, burst)
        results.append(("direct Pod create (no operator)", burst, latencies, wall))
        task.cancel()
        for ns, count, limit in (("burst", burst, burst), ("sustained", sustained, 20)):
            watcher = Watcher(c, ns)
            task = asyncio.create_task(watcher.run())
            await watcher.ready.wait()
            url = f"/apis/paddock.dev/v1alpha1/namespaces/{ns}/agents"
            bodies = [
                (url, f"{ns[0]}{i}-sandbox", minimal_agent(f"{ns[0]}{i}")) for i in range(count)
            ]
            latencies, wall = await run_batch(c, watcher, bodies, limit)
            label = f"{count} Agents at once" if ns == "burst" else f"{count} Agents, 20 in flight"
            results.append((label, count, latencies, wall))
            task.cancel()
        return results


def ssl_context(server: ApiServer) -> Any:
    import ssl  # noqa: PLC0415

    return ssl.create_default_context(cafile=str(server.ca_file))


async def wait_default_sa(client: httpx.AsyncClient, namespace: str) -> None:
    for _ in range(300):
        if (await client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")).is_success:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no default ServiceAccount in {namespace}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--sustained", type=int, default=200)
    args = parser.parse_args()
    crds = REPO / "charts" / "paddock" / "crds"
    with (
        tempfile.TemporaryDirectory() as tmp,
        ApiServer(binaries(), Path(tmp), crds=[crds]) as server,
    ):
        log = (Path(tmp) / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "paddock.cli", "operator", "--standalone"],
            env=os.environ | {"KUBECONFIG": str(server.kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(3)  # let it log in and start its watches
            results = asyncio.run(bench(server, args.burst, args.sustained))
            peak = peak_rss_mib(operator.pid)
        finally:
            operator.terminate()
            operator.wait()
    floor = percentile(results[0][2], 0.99)
    heads = ("n", "p50 ms", "p99 ms", "max ms", "per s", "p99/floor")
    print(f"{'run':34}", *(f"{h:>9}" for h in heads))
    for label, n, latencies, wall in results:
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        row = (n, f"{p50:.0f}", f"{p99:.0f}", f"{max(latencies):.0f}", f"{n / wall:.1f}")
        print(f"{label:34}", *(f"{v:>9}" for v in row), f"{p99 / floor:>9.1f}")
    print(f"operator peak memory (VmHWM): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
