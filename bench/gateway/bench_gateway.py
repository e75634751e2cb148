"""Gateway benchmark: events/s from a runner to an SSE client, and reconnect latency at scale.

Runs everything for real on loopback: redis-server (AOF on, fsync everysec as in production),
etcd + kube-apiserver (tokens and access reviews), the scripted protocol runner, and one
`paddock gateway` process. Prints two tables with ratios:

1. events/s: the runner's own SSE stream read directly, against the same events read through the
   gateway (runner -> gateway -> Redis -> SSE client), for 1 session and for 10 at once.
2. reconnect to the first replayed event (Last-Event-ID in the middle of the session's history),
   p50/p99, with 1 open session against 1,000 open sessions each holding a live SSE stream (held
   by a second client process, as other users would hold them).

With --metrics, instead: the cost of the gateway's metrics. Two gateways run side by side, the
same but for PADDOCK_GATEWAY_METRICS (each on its own Redis database), the one with metrics on
scraped every second; events/s and reconnect latency are measured on each in alternating rounds
and printed with the ratio on/off.

Usage: eval "$(hack/kube-binaries.sh)" && .venv/bin/python bench/gateway/bench_gateway.py
       [--metrics [--rounds N]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from paddock_testing.agents import minimal_agent
from paddock_testing.apiserver import ApiServer, KubeBinaries
from paddock_testing.proc import free_port
from paddock_testing.redis import RedisServer
from paddock_testing.wait import wait_http

AGENT = "bench"
NAMESPACE = "default"


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        child = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def set_ready(server: ApiServer, endpoint: str) -> None:
    agent = minimal_agent(AGENT)
    server.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(agent))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "endpoint": endpoint,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Bench", "lastTransitionTime": now}
        ],
    }
    server.kubectl(
        "patch", "agent", AGENT, "-n", NAMESPACE, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


async def count_until_turn_end(response: httpx.Response) -> int:
    """Events in an SSE stream up to turn_end, counted on the raw bytes (a cheap client)."""
    count, tail = 0, b""
    async for chunk in response.aiter_raw():
        data = tail + chunk
        count += data.count(b"\n\n") - tail.count(b"\n\n")
        if b'"turn_end"' in data:
            return count
        tail = data[-64:]
    raise RuntimeError("stream ended before turn_end")


class Bench:
    def __init__(self, gateway: str, runner: str, token: str) -> None:
        self.gateway = gateway
        self.runner = runner
        self.token = token
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60, read=None),
            limits=httpx.Limits(max_connections=3000, max_keepalive_connections=3000),
        )

    def sessions(self, path: str = "") -> str:
        return f"{self.gateway}/v1/namespaces/{NAMESPACE}/agents/{AGENT}/sessions{path}"

    async def post(self, url: str, body: object) -> httpx.Response:
        """POST, once more if a kept-alive connection was closed under it."""
        try:
            answer = await self.http.post(url, json=body)
        except httpx.TransportError:
            answer = await self.http.post(url, json=body)
        answer.raise_for_status()
        return answer

    async def session(self) -> str:
        return str((await self.post(self.sessions(), {})).json()["id"])

    async def send(self, session_id: str, text: str) -> None:
        # The message id makes the retry in post() safe: a repeat is not run twice.
        body = {"id": uuid.uuid4().hex, "content": text}
        await self.post(self.sessions(f"/{session_id}/messages"), body)

    async def through_gateway(self, events: int) -> int:
        session_id = await self.session()
        async with self.http.stream("GET", self.sessions(f"/{session_id}/events")) as stream:
            await self.send(session_id, f"emit {events}")
            return await count_until_turn_end(stream)

    async def direct(self, events: int) -> int:
        turn = {
            "session_id": uuid.uuid4().hex,
            "turn_id": uuid.uuid4().hex,
            "messages": [{"role": "user", "content": f"emit {events}"}],
        }
        (await self.http.post(f"{self.runner}/v1/turns", json=turn)).raise_for_status()
        url = f"{self.runner}/v1/turns/{turn['turn_id']}/events"
        async with self.http.stream("GET", url) as stream:
            return await count_until_turn_end(stream)

    async def throughput(self, how: str, sessions: int, events: int) -> float:
        run = self.through_gateway if how == "gateway" else self.direct
        start = time.perf_counter()
        counts = await asyncio.gather(*(run(events) for _ in range(sessions)))
        return sum(counts) / (time.perf_counter() - start)

    async def reconnects(self, session_ids: list[str], cursors: list[str]) -> list[float]:
        """Time from request to the first replayed event, one reconnect per session."""
        timings = []
        for session_id, cursor in zip(session_ids, cursors, strict=True):
            start = time.perf_counter()
            headers = {"Last-Event-ID": cursor}
            url = self.sessions(f"/{session_id}/events")
            async with self.http.stream("GET", url, headers=headers) as stream:
                async for chunk in stream.aiter_raw():
                    if b"\nid: " in b"\n" + chunk or chunk.startswith(b"id: "):
                        timings.append(time.perf_counter() - start)
                        break
        return timings

    async def history_cursor(self, session_id: str) -> str:
        """An event id in the middle of the session's history."""
        ids = []
        async with self.http.stream("GET", self.sessions(f"/{session_id}/events")) as stream:
            buffer = b""
            async for chunk in stream.aiter_raw():
                buffer += chunk
                if b'"turn_end"' in buffer:
                    break
        for line in buffer.split(b"\n"):
            if line.startswith(b"id: "):
                ids.append(line[4:].decode())
        return ids[len(ids) // 2]


async def hold_open(bench: Bench, session_id: str, opened: asyncio.Event) -> None:
    async with bench.http.stream("GET", bench.sessions(f"/{session_id}/events")) as stream:
        opened.set()
        async for _ in stream.aiter_raw():
            pass


async def hold_streams(gateway: str) -> None:
    """The other users: one live SSE stream per session read from stdin, until stdin closes."""
    order = json.loads(await asyncio.to_thread(sys.stdin.readline))
    bench = Bench(gateway, "", order["token"])
    tasks = []
    for session_id in order["sessions"]:
        opened = asyncio.Event()
        tasks.append(asyncio.create_task(hold_open(bench, session_id, opened)))
        await opened.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def prepare(bench: Bench, count: int) -> tuple[list[str], list[str]]:
    """`count` sessions that each ran one turn; a mid-history cursor for each."""
    ids = [await bench.session() for _ in range(count)]
    for batch in range(0, count, 100):
        await asyncio.gather(*(bench.send(i, "emit 10") for i in ids[batch : batch + 100]))
    cursors = []
    for batch in range(0, count, 100):
        cursors += await asyncio.gather(
            *(bench.history_cursor(i) for i in ids[batch : batch + 100])
        )
    return ids, cursors


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(bench: Bench, events: int, sessions: int) -> None:
    await bench.throughput("gateway", 1, 1000)  # warm up
    rows = []
    for parallel in (1, 10):
        per = events // parallel
        direct = await bench.throughput("direct", parallel, per)
        gateway = await bench.throughput("gateway", parallel, per)
        rows.append((f"{parallel} session(s) x {per} events", direct, gateway))
    print("\nevents/s, runner -> SSE client (goal through the gateway: >= 20,000)")
    print(f"{'':34} {'runner direct':>14} {'via gateway':>12} {'gateway/direct':>15}")
    for name, direct, gateway in rows:
        print(f"{name:34} {direct:14,.0f} {gateway:12,.0f} {gateway / direct:15.2f}")

    ids, cursors = await prepare(bench, sessions)
    alone = await bench.reconnects(ids[:1] * 200, cursors[:1] * 200)
    # The open streams belong to other users: another process holds them, as other clients would.
    holder = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--hold-streams", bench.gateway,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdin, stdout = holder.stdin, holder.stdout
    if stdin is None or stdout is None:
        raise RuntimeError("no pipes to the stream holder")
    stdin.write(json.dumps({"token": bench.token, "sessions": ids}).encode() + b"\n")
    await stdin.drain()
    if (await stdout.readline()).strip() != b"ready":
        raise RuntimeError("the stream holder failed")
    try:
        loaded = await bench.reconnects(ids, cursors)
    finally:
        stdin.close()
        await holder.wait()
    print("\nreconnect with Last-Event-ID -> first replayed event, ms (goal p99 <= 50)")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'max':>8}")
    runs = (("1 open session", alone), (f"{sessions} open sessions, live streams", loaded))
    for name, values in runs:
        print(
            f"{name:34} {statistics.median(values) * 1000:8.2f} "
            f"{percentile(values, 99) * 1000:8.2f} {max(values) * 1000:8.2f}"
        )
    ratio = percentile(loaded, 99) / percentile(alone, 99)
    print(f"{'p99 ratio, loaded / alone':34} {ratio:17.2f}")


async def scrape_every_second(bench: Bench) -> None:
    """Prometheus, scraping the gateway (more often than the usual 15-30 s)."""
    while True:
        (await bench.http.get(f"{bench.gateway}/metrics")).raise_for_status()
        await asyncio.sleep(1)


async def alternating(
    off: Bench, on: Bench, rounds: int, measure: Callable[[Bench], Awaitable[list[float]]]
) -> tuple[list[float], list[float]]:
    """measure() on each gateway, `rounds` times, in the order off on, on off, ... so that a
    busy machine's drift falls on both alike."""
    results: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds):
        for metrics_on in (False, True) if i % 2 == 0 else (True, False):
            results[metrics_on] += await measure(on if metrics_on else off)
    return results[False], results[True]


async def compare_metrics(off: Bench, on: Bench, events: int, sessions: int, rounds: int) -> None:
    for bench in (off, on):
        await bench.throughput("gateway", 1, 1000)  # warm up
    scraper = asyncio.create_task(scrape_every_second(on))
    try:
        rows = []
        for parallel in (1, 10):
            per = events // parallel

            async def rate(bench: Bench, parallel: int = parallel, per: int = per) -> list[float]:
                return [await bench.throughput("gateway", parallel, per)]

            rates_off, rates_on = await alternating(off, on, rounds, rate)
            rows.append(
                (f"events/s, {parallel} session(s) x {per}",
                 statistics.median(rates_off), statistics.median(rates_on), True)
            )  # fmt: skip
        prepared = {id(b): await prepare(b, sessions) for b in (off, on)}

        async def reconnect(bench: Bench) -> list[float]:
            return await bench.reconnects(*prepared[id(bench)])

        waits_off, waits_on = await alternating(off, on, rounds, reconnect)
        for name, p in (("p50", 50.0), ("p99", 99.0)):
            row = (percentile(waits_off, p) * 1000, percentile(waits_on, p) * 1000)
            rows.append((f"reconnect {name}, ms ({len(waits_on)} each)", *row, False))
    finally:
        scraper.cancel()
        await asyncio.gather(scraper, return_exceptions=True)
    print(f"\nmetrics on vs off, two gateways side by side, {rounds} alternating rounds")
    print(f"{'':38} {'off':>10} {'on':>10} {'on/off':>8} {'cost':>7}")
    for name, without, with_, more_is_better in rows:
        ratio = with_ / without
        cost = (1 - ratio) if more_is_better else (ratio - 1)
        print(f"{name:38} {without:10,.2f} {with_:10,.2f} {ratio:8.3f} {cost:7.1%}")
    print("(goal: cost <= 3%; events/s are medians of the rounds, latencies over all of them)")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--events", type=int, default=100_000)
    args.add_argument("--sessions", type=int, default=1000)
    args.add_argument("--metrics", action="store_true", help="metrics on vs off, side by side")
    args.add_argument("--rounds", type=int, default=4, help="with --metrics: rounds per side")
    args.add_argument("--hold-streams", metavar="GATEWAY", help=argparse.SUPPRESS)
    parsed = args.parse_args()
    if parsed.hold_streams:
        asyncio.run(hold_streams(parsed.hold_streams))
        return
    work = Path(tempfile.mkdtemp(prefix="paddock-bench-gateway-"))
    try:
        if parsed.metrics:
            measure_metrics(work, parsed.events, parsed.sessions, parsed.rounds)
        else:
            measure(work, parsed.events, parsed.sessions)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def servers(work: Path) -> Iterator[tuple[ApiServer, RedisServer, str]]:
    """The API server with the CRDs, Redis, and a runner the bench Agent is Ready at (its URL)."""
    binaries = KubeBinaries.from_env()
    with (
        ApiServer(binaries, work / "apiserver") as apiserver,
        RedisServer(work / "redis", fsync="everysec") as redis,
    ):
        crds = Path(__file__).resolve().parents[2] / "charts" / "paddock" / "crds"
        apiserver.kubectl("apply", "--server-side", "-f", str(crds))
        apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        runner_port = free_port()
        runner_url = f"http://127.0.0.1:{runner_port}"
        runner_argv = [
            sys.executable,
            "-m",
            "paddock_testing.scripted_runner",
            "--port",
            str(runner_port),
        ]
        with process(runner_argv, {}, work / "runner.log"):
            wait_http(f"{runner_url}/healthz")
            set_ready(apiserver, runner_url)
            yield apiserver, redis, runner_url


@contextmanager
def gateway(
    work: Path, apiserver: ApiServer, redis_url: str, name: str, **settings: str
) -> Iterator[str]:
    """A `paddock gateway` process (PADDOCK_GATEWAY_<SETTING> for each setting); its URL."""
    token_file = work / "token"
    token_file.write_text(apiserver.token)
    port = free_port()
    env = {
        "PADDOCK_GATEWAY_PORT": str(port),
        "PADDOCK_GATEWAY_REDIS_URL": redis_url,
        "PADDOCK_GATEWAY_KUBE_URL": apiserver.url,
        "PADDOCK_GATEWAY_KUBE_TOKEN_FILE": str(token_file),
        "PADDOCK_GATEWAY_KUBE_CA_FILE": str(apiserver.ca_file),
        **{f"PADDOCK_GATEWAY_{key.upper()}": value for key, value in settings.items()},
    }
    argv = [sys.executable, "-m", "paddock.cli", "gateway"]
    with process(argv, env, work / f"{name}.log"):
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz")
        yield url


def measure(work: Path, events: int, sessions: int) -> None:
    with (
        servers(work) as (apiserver, redis, runner_url),
        gateway(work, apiserver, redis.url, "gateway") as gateway_url,
    ):
        bench = Bench(gateway_url, runner_url, apiserver.token)
        asyncio.run(run(bench, events, sessions))


def measure_metrics(work: Path, events: int, sessions: int, rounds: int) -> None:
    with servers(work) as (apiserver, redis, runner_url):
        # A Redis database each: neither gateway's sweep takes the other's turns.
        url_off = redis.url.removesuffix("/0") + "/1"
        with (
            gateway(work, apiserver, url_off, "gateway-off", metrics="false") as off,
            gateway(work, apiserver, redis.url, "gateway-on", metrics="true") as on,
        ):
            benches = (
                Bench(off, runner_url, apiserver.token),
                Bench(on, runner_url, apiserver.token),
            )
            asyncio.run(compare_metrics(*benches, events, sessions, rounds))


if __name__ == "__main__":
    main()
