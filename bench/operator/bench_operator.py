"""Benchmark: apply Agents to a real kube-apiserver and time how soon the operator makes their Pods.

    python bench/operator/bench_operator.py [--burst 100] [--sustained 200]

Starts etcd + kube-apiserver (+ controller-manager), runs `paddock operator` as a child process,
and watches Pods. Four runs, side by side:
  floors     the same sandbox Pods, then every object of an Agent (CA Secret, Pod, ConfigMap,
             Service, NetworkPolicy, PVC), created straight through the API: no operator at all
  burst      --burst Agents applied at once
  sustained  --sustained Agents applied back to back (20 in flight), for Agents/s
Latency is from sending the create to the Pod's ADDED event on a watch; per second counts Agents
done: every object created (floors), the Agent's status written for its generation (operator).
Peak memory is the operator's VmHWM; requests per Agent come from the API server's metrics; CPU
per Agent is each process's over the two operator runs, and the ceiling what the host's cores
allow at that cost, with the bench's own share given back.
Needs the binaries of hack/kube-binaries.sh (found the same way the tests do).
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp

from paddock import pki
from paddock.api.agent import AgentSpec
from paddock.kubeobj import Obj
from paddock_operator.kube.paths import path_of
from paddock_operator.names import AgentRef
from paddock_operator.render import objects
from paddock_operator.render.pod import pod as render_pod
from paddock_operator.settings import OperatorSettings
from paddock_testing.agents import minimal_agent
from paddock_testing.apiserver import ApiServer, ApiServerError, KubeBinaries
from paddock_testing.proc import script_exports

REPO = Path(__file__).resolve().parents[2]


def binaries() -> KubeBinaries:
    try:
        return KubeBinaries.from_env()
    except ApiServerError:
        return KubeBinaries.from_env(script_exports(REPO / "hack" / "kube-binaries.sh"))


def pod_created(event: Obj) -> bool:
    return bool(event["type"] == "ADDED")


def agent_reconciled(event: Obj) -> bool:
    """The operator wrote a status for the Agent's current generation, naming its Pod."""
    obj = event["object"]
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    return bool(status.get("podName")) and status.get("observedGeneration") == generation


class Watcher:
    """Records when each object of a collection first meets a condition, seen on a watch."""

    def __init__(self, client: aiohttp.ClientSession, url: str, met: Callable[[Obj], bool]) -> None:
        self.client = client
        self.url = url
        self.met = met
        self.seen: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching; return once the watch is open (raise if it failed to open)."""
        self.task = asyncio.create_task(self.run())
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({ready, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            self.task.result()

    async def run(self) -> None:
        """Watch from now on; a watch the server ends goes on from the last version seen."""
        version = None
        while True:
            params = {"watch": "true", "allowWatchBookmarks": "true"}
            if version is not None:
                params["resourceVersion"] = version
            timeout = aiohttp.ClientTimeout(total=None)
            async with self.client.get(self.url, params=params, timeout=timeout) as response:
                response.raise_for_status()
                self.ready.set()
                async for line in response.content:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch {self.url}: {event['object']}")
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    name = event["object"]["metadata"]["name"]
                    if name not in self.seen and self.met(event):
                        self.seen[name] = time.perf_counter()

    async def wait(self, names: list[str]) -> None:
        deadline = time.perf_counter() + 300
        while not all(n in self.seen for n in names):
            if self.task is not None and self.task.done():
                self.task.result()  # the watch failed: say why now, not at the deadline
                raise RuntimeError(f"watch {self.url} ended")
            if time.perf_counter() > deadline:
                missing = [n for n in names if n not in self.seen]
                raise TimeoutError(f"{len(missing)} never got there, e.g. {missing[:3]}")
            await asyncio.sleep(0.01)


IN_FLIGHT = 8
"""Requests in flight when the bench itself makes an Agent's objects (the floors): on 2 cores
the API server gives no more from 8 up (16 gave slower floors than 8)."""


async def create(
    client: aiohttp.ClientSession, gate: asyncio.Semaphore, url: str, body: Obj
) -> float:
    async with gate:
        sent = time.perf_counter()
        async with client.post(url, json=body) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST {url}: {response.status} {await response.text()}")
    return sent


Group = tuple[str, str, list[tuple[str, Obj]]]
"""An Agent's name, its sandbox Pod's, and the (collection URL, body) creates that make it."""


async def run_batch(
    client: aiohttp.ClientSession,
    namespace: str,
    groups: list[Group],
    limit: int,
    in_flight: int,
    *,
    operator: bool,
) -> tuple[list[float], float]:
    """Run the groups' creates, at most limit groups and in_flight requests at once.

    Returns each Pod's latency (ms, from sending its group's first create to its ADDED event) and
    the wall time until every group was done: all its creates answered, and with an operator, its
    Agent's status written for its generation."""
    pods = Watcher(client, f"/api/v1/namespaces/{namespace}/pods", pod_created)
    agents = Watcher(
        client, f"/apis/paddock.dev/v1alpha1/namespaces/{namespace}/agents", agent_reconciled
    )
    watchers = [pods, agents] if operator else [pods]
    for watcher in watchers:
        await watcher.start()
    groups_gate, requests_gate = asyncio.Semaphore(limit), asyncio.Semaphore(in_flight)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}

    async def one(agent: str, pod: str, creates: list[tuple[str, Obj]]) -> None:
        async with groups_gate:
            for url, body in creates:
                at = await create(client, requests_gate, url, body)
                sent.setdefault(pod, at)
            answered[agent] = time.perf_counter()

    start = time.perf_counter()
    await asyncio.gather(*(one(*g) for g in groups))
    await pods.wait([pod for _, pod, _ in groups])
    names = [agent for agent, _, _ in groups]
    if operator:
        await agents.wait(names)
        done = max(agents.seen[n] for n in names)
    else:
        done = max(answered[n] for n in names)
    for watcher in watchers:
        if watcher.task is not None:
            watcher.task.cancel()
    wall = max(done, *pods.seen.values()) - start
    return [(pods.seen[pod] - sent[pod]) * 1000 for _, pod, _ in groups], wall


def floor_groups(namespace: str, count: int, *, everything: bool) -> list[Group]:
    """What the operator makes for count Agents, created straight through the API."""
    spec = AgentSpec.model_validate(minimal_agent("x")["spec"])
    settings, ca = OperatorSettings(), pki.new_ca("bench")
    groups: list[Group] = []
    for i in range(count):
        ref = AgentRef(f"{namespace[0]}{i}", namespace, "uid")
        stubs = {"TOKEN": "stub"}
        made = [render_pod(ref, spec, settings, stubs)]
        if everything:
            made = [
                objects.ca_secret(ref, ca, stubs),
                made[0],
                objects.vault_config_map(ref, spec, stubs, ca.cert_pem, settings),
                objects.service(ref),
                objects.network_policy(ref, settings),
                objects.workspace_claim(ref, spec),
            ]
        for body in made:  # no Agent owns them: keep the garbage collector away
            body["metadata"].pop("ownerReferences", None)
        groups.append((ref.name, ref.pod, [(path_of(b).rsplit("/", 1)[0], b) for b in made]))
    return groups


WRITES = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}


async def request_counts(client: aiohttp.ClientSession) -> Counter[tuple[str, str]]:
    """The API server's request counters (apiserver_request_total) by (verb, resource)."""
    async with client.get("/metrics") as response:
        response.raise_for_status()
        text = await response.text()
    counts: Counter[tuple[str, str]] = Counter()
    found = re.findall(r"^apiserver_request_total\{(.*)\} (\S+)$", text, re.M)
    for labels, value in found:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = (fields.get("verb", ""), fields.get("resource", ""))
        if fields.get("subresource"):
            key = (key[0], f"{key[1]}/{fields['subresource']}")
        counts[key] += int(float(value))
    return counts


def per_agent(counts: Counter[tuple[str, str]], agents: int) -> str:
    """The operator's writes and reads per Agent, writes by resource."""
    counts = counts.copy()
    counts[("POST", "agents")] -= agents  # the bench's own creates
    writes: Counter[str] = Counter()
    reads = 0
    for (verb, resource), n in counts.items():
        if verb in WRITES:
            writes[resource] += n
        elif verb == "GET":
            reads += n
    parts = ", ".join(f"{r} {n / agents:.1f}" for r, n in writes.most_common() if n > 0)
    total = sum(writes.values()) / agents
    return f"{total:.1f} writes ({parts}), {reads / agents:.1f} reads"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


Result = tuple[str, int, list[float], float]
"""A run's label, its number of Agents, their latencies (ms) and its wall time (s)."""


async def bench(
    server: ApiServer, burst: int, sustained: int, processes: dict[str, int]
) -> tuple[list[Result], str, dict[str, float]]:
    """The four runs' results, the operator's API requests per Agent, and the CPU seconds each
    of processes used over the two operator runs."""
    connector = aiohttp.TCPConnector(limit=100, ssl=server.ssl_context())
    async with aiohttp.ClientSession(
        server.url, connector=connector, headers=server.admin_headers
    ) as c:
        results = []
        gate = asyncio.Semaphore(1)
        for ns in ("pods", "objects", "burst", "sustained"):
            await create(c, gate, "/api/v1/namespaces", {"metadata": {"name": ns}})
            secret = {"metadata": {"name": "token"}, "stringData": {"v": "real"}}
            await create(c, gate, f"/api/v1/namespaces/{ns}/secrets", secret)
            await wait_default_sa(c, ns)
        for ns, everything, label in (
            ("pods", False, "floor: the Pods alone, no operator"),
            ("objects", True, "floor: every object, no operator"),
        ):
            groups = floor_groups(ns, burst, everything=everything)
            latencies, wall = await run_batch(c, ns, groups, burst, IN_FLIGHT, operator=False)
            results.append((label, burst, latencies, wall))
        before = await request_counts(c)
        cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        for ns, count, limit in (("burst", burst, burst), ("sustained", sustained, 20)):
            url = f"/apis/paddock.dev/v1alpha1/namespaces/{ns}/agents"
            names = [f"{ns[0]}{i}" for i in range(count)]
            groups = [(n, f"{n}-sandbox", [(url, minimal_agent(n))]) for n in names]
            latencies, wall = await run_batch(c, ns, groups, limit, limit, operator=True)
            label = f"{count} Agents at once" if ns == "burst" else f"{count} Agents, 20 in flight"
            results.append((label, count, latencies, wall))
        await asyncio.sleep(1)  # the last Events
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
        used = (await request_counts(c)) - before
        return results, per_agent(used, burst + sustained), cpu


async def wait_default_sa(client: aiohttp.ClientSession, namespace: str) -> None:
    for _ in range(300):
        async with client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default") as answer:
            if answer.status == 200:
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
            processes = {
                "kube-apiserver": server.pid("kube-apiserver"),
                "etcd": server.pid("etcd"),
                "controller-manager": server.pid("kube-controller-manager"),
                "operator": operator.pid,
                "bench": os.getpid(),
            }
            results, requests, cpu = asyncio.run(
                bench(server, args.burst, args.sustained, processes)
            )
            peak = peak_rss_mib(operator.pid)
        finally:
            operator.terminate()
            operator.wait()
    report(results, requests, cpu, peak, args.burst + args.sustained)


def report(
    results: list[Result], requests: str, cpu: dict[str, float], peak: float, agents: int
) -> None:
    floor = percentile(results[1][2], 0.99)
    heads = ("n", "p50 ms", "p99 ms", "max ms", "done/s", "p99/floor*")
    print(f"{'run':34}", *(f"{h:>9}" for h in heads))
    for label, n, latencies, wall in results:
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        row = (n, f"{p50:.0f}", f"{p99:.0f}", f"{max(latencies):.0f}", f"{n / wall:.1f}")
        print(f"{label:34}", *(f"{v:>9}" for v in row), f"{p99 / floor:>9.1f}")
    print("* floor: every object, no operator (what the API server alone needs)")
    print(f"operator peak memory (VmHWM): {peak:.0f} MiB")
    print(f"API requests per Agent: {requests}")
    per = {name: seconds * 1000 / agents for name, seconds in cpu.items()}
    parts = ", ".join(f"{name} {ms:.1f}" for name, ms in per.items())
    cores = os.cpu_count() or 1
    control = sum(ms for name, ms in per.items() if name != "bench")
    print(f"CPU ms per Agent over the operator runs: {parts}")
    print(
        f"ceiling on {cores} cores if all but the bench had them to themselves: "
        f"{cores * 1000 / control:.0f} Agents/s"
    )


if __name__ == "__main__":
    main()
