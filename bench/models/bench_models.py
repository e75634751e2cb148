"""Benchmark: changing models through llama-server's router, and the runner's cost to first token.

    python bench/models/bench_models.py [--rounds 10] [--turns 30]

Writes two tiny random-weight GGUFs and runs the llama-server of hack/llama-server.sh (found the
same way the tests find it). Two tables, each compared side by side in one run:

  model change   time until the other model answers a 1-token request, by
                   router swap     paddock.modelserver.swap: /models/unload, /models/load, wait
                   router request  a request naming the other model (the router loads it itself)
                   restart         stop llama-server, start it on the other model, wait /health
  first token    time from sending a request to the first streamed token, by
                   direct          POST /v1/chat/completions to llama-server
                   runner          POST /v1/turns to `paddock runner`, first `token` event on SSE
                 (the runner's request to the model is the same body the direct one sends)

The tiny models load in milliseconds, so the model-change numbers are the servers' own overhead;
real models add their load time to every row alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from paddock.models.tiny import write_tiny_llama
from paddock.modelserver import ModelServer
from paddock.protocol import Message, TurnRequest
from paddock_testing.llamaserver import LlamaServer, LlamaServerError, llama_server_binary
from paddock_testing.proc import script_exports
from paddock_testing.runner import RunnerProcess, runner_events, start_turn

REPO = Path(__file__).resolve().parents[2]
MODELS = ("tiny-a", "tiny-b")
SYSTEM = "You are a coding agent."
PROMPT = "Say hello."
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def binary() -> Path:
    try:
        return llama_server_binary()
    except LlamaServerError:
        return llama_server_binary(script_exports(REPO / "hack" / "llama-server.sh"))


async def one_token(http: httpx.AsyncClient, model: str) -> None:
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post("/v1/chat/completions", json=body)
    response.raise_for_status()


async def timed(action: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await action()
    return time.perf_counter() - start


async def model_change(
    llama: Path, models: Path, work: Path, rounds: int
) -> dict[str, list[float]]:
    """Seconds until the other model answers, for each way of changing it."""
    times: dict[str, list[float]] = {"router swap": [], "router request": [], "restart": []}
    with LlamaServer(llama, models, work / "router") as server:
        # Control and chat on separate connections, chat without keep-alive, as the runner does
        # (see paddock.modelserver.ModelServer).
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=120, limits=NO_KEEPALIVE) as http,
            httpx.AsyncClient(base_url=server.url, timeout=120) as control_http,
        ):
            control = ModelServer(control_http, poll_s=0.01)
            await control.swap(MODELS[0])
            for i in range(rounds):
                target = MODELS[(i + 1) % 2]

                async def swap(target: str = target) -> None:
                    await control.swap(target)
                    await one_token(http, target)

                times["router swap"].append(await timed(swap))
                other = MODELS[i % 2]

                async def request(other: str = other) -> None:
                    await one_token(http, other)

                times["router request"].append(await timed(request))
    for i in range(rounds):
        # The classic way: one llama-server per model, restarted on a change.
        name = MODELS[i % 2]
        server = LlamaServer(
            llama, models, work / "restart", ["--model", str(models / f"{name}.gguf")]
        )

        async def restart(server: LlamaServer = server, name: str = name) -> None:
            await asyncio.to_thread(server.start)
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                await one_token(http, name)

        times["restart"].append(await timed(restart))
        server.stop()
    return times


async def first_token_direct(http: httpx.AsyncClient, max_tokens: int) -> float:
    body = {
        "model": MODELS[0],
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        "stream": True,
    }
    start = time.perf_counter()
    elapsed = None
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():  # read it all, as the runner does
            if elapsed is None and '"content":"' in line:
                elapsed = time.perf_counter() - start
    if elapsed is None:
        raise RuntimeError("the model streamed no token")
    return elapsed


async def first_token_runner(http: httpx.AsyncClient, turn: int) -> float:
    request = TurnRequest(
        session_id=f"bench-{turn}",
        turn_id=f"bench-{turn}",
        messages=[Message(role="user", content=PROMPT)],
        model=MODELS[0],
    )
    start = time.perf_counter()
    await start_turn(http, request)
    elapsed = None
    async with http.stream("GET", f"/v1/turns/{request.turn_id}/events") as response:
        async for event in runner_events(response):
            if event.type == "token" and elapsed is None:
                elapsed = time.perf_counter() - start
    if elapsed is None:
        raise RuntimeError("the turn streamed no token")
    return elapsed


async def first_token(llama: Path, models: Path, work: Path, turns: int) -> dict[str, list[float]]:
    """Seconds to the first token, direct and through the runner, interleaved."""
    times: dict[str, list[float]] = {"direct": [], "runner": []}
    max_tokens = 16
    with LlamaServer(llama, models, work / "latency", ["--parallel", "1"]) as server:
        workspace = work / "workspace"
        workspace.mkdir()
        env = {
            "PADDOCK_RUNNER_MODEL_URL": server.model_url,
            "PADDOCK_RUNNER_WORKSPACE": str(workspace),
            "PADDOCK_RUNNER_SYSTEM_PROMPT": SYSTEM,
            # One step, no tools: the runner's request is the direct one's body.
            "PADDOCK_RUNNER_MAX_STEPS": "1",
            "PADDOCK_RUNNER_MAX_TOKENS": str(max_tokens),
            "PADDOCK_RUNNER_TEMPERATURE": "0",
        }
        with RunnerProcess(env, work / "runner") as runner:
            async with (
                httpx.AsyncClient(base_url=server.url, timeout=120) as direct,
                httpx.AsyncClient(base_url=runner.url, timeout=120) as via_runner,
            ):
                await first_token_direct(direct, max_tokens)  # load the model, warm both paths
                await first_token_runner(via_runner, -1)
                for turn in range(turns):
                    times["direct"].append(await first_token_direct(direct, max_tokens))
                    times["runner"].append(await first_token_runner(via_runner, turn))
    return times


def table(title: str, times: dict[str, list[float]], baseline: str) -> str:
    base = statistics.median(times[baseline])
    rows = [
        f"{title}",
        f"  {'':<16}{'median ms':>10}{'p90 ms':>10}{'min ms':>10}{'vs ' + baseline:>16}",
    ]
    for name, samples in times.items():
        ordered = sorted(samples)
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        median = statistics.median(samples)
        rows.append(
            f"  {name:<16}{median * 1e3:>10.1f}{p90 * 1e3:>10.1f}{ordered[0] * 1e3:>10.1f}"
            f"{median / base:>15.2f}x"
        )
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="model changes per way")
    parser.add_argument("--turns", type=int, default=30, help="first-token samples per path")
    args = parser.parse_args()
    llama = binary()
    with tempfile.TemporaryDirectory(prefix="paddock-bench-") as tmp:
        work = Path(tmp)
        models = work / "models"
        for seed, name in enumerate(MODELS, start=1):
            write_tiny_llama(models / f"{name}.gguf", seed=seed)
        change = await model_change(llama, models, work, args.rounds)
        latency = await first_token(llama, models, work, args.turns)
    print(table(f"model change ({args.rounds} each)", change, "restart"))
    print()
    print(table(f"time to first token ({args.turns} each, interleaved)", latency, "direct"))
    added = [r - d for r, d in zip(latency["runner"], latency["direct"], strict=True)]
    print(f"  runner adds {statistics.median(added) * 1e3:.1f} ms (median of paired differences)")


if __name__ == "__main__":
    asyncio.run(main())
