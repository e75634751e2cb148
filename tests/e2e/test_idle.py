"""Tier 4: the example Agent with a short idle policy suspends by itself, and a `paddock chat`
message wakes it; the reply streams and the workspace is what it was."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from paddock.kubeobj import Obj
from paddock_testing.kind import EXAMPLE_AGENT, EXAMPLE_NAMESPACE, GATEWAY_URL, Kind, wait_until

pytestmark = pytest.mark.cluster

NS, AGENT = EXAMPLE_NAMESPACE, EXAMPLE_AGENT
IDLE_AFTER = "10s"


def _ready_pod(kind: Kind) -> Obj | None:
    if not kind.agent_ready(NS, AGENT):
        return None
    pods = [p for p in kind.sandbox_pods(NS, AGENT) if not p["metadata"].get("deletionTimestamp")]
    return pods[0] if len(pods) == 1 else None


def _policy(kind: Kind, patch: str) -> None:
    kind.kubectl("patch", "agent", AGENT, "--type=merge", "-p", patch, namespace=NS)


@pytest.fixture
def idle_policy(kind: Kind) -> Iterator[None]:
    """The example Agent with idleAfter 10s; afterwards without it, and Ready again."""
    wait_until(lambda: _ready_pod(kind), "the example Agent to be Ready")
    _policy(kind, f'{{"spec":{{"lifecycle":{{"idleAfter":"{IDLE_AFTER}"}}}}}}')
    try:
        yield
    finally:
        _policy(kind, '{"spec":{"lifecycle":{"idleAfter":null}}}')  # which also wakes it
        wait_until(lambda: _ready_pod(kind), "the example Agent to be Ready again", 300)


def test_an_idle_agent_suspends_by_itself_and_a_chat_message_wakes_it(
    kind: Kind, idle_policy: None
) -> None:
    pod = _ready_pod(kind)
    assert pod is not None
    name, content = f"idle-{uuid.uuid4().hex[:8]}.txt", uuid.uuid4().hex
    kind.exec(
        NS, pod["metadata"]["name"], "harness", "sh", "-c", f"echo {content} > /workspace/{name}"
    )

    def idle() -> bool:
        agent = kind.get("agent", AGENT, NS) or {}
        ready = next(c for c in agent["status"]["conditions"] if c["type"] == "Ready")
        return bool(agent["status"]["phase"] == "Suspended" and ready["reason"] == "Idle")

    wait_until(idle, "the example Agent to suspend for being idle", 120)
    wait_until(lambda: not kind.sandbox_pods(NS, AGENT), "its Pod to go")
    row = kind.kubectl("get", "agent", AGENT, namespace=NS).stdout.splitlines()[1].split()
    assert row[1] == "Suspended", row
    assert "Idle" in row, row

    token = kind.token(NS, "e2e-idle", AGENT)
    chat = subprocess.run(
        [
            sys.executable, "-m", "paddock.cli", "chat", AGENT, "-n", NS,
            "--gateway", GATEWAY_URL, "--token", token,
        ],
        input="Say hello.\n", capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    out = chat.stdout
    waking = out.find("[agent waking: it was idle]\n")
    back = out.find("[agent back: resuming the turn]\n")
    done = out.find("[turn done]\n")
    assert 0 <= waking < back < done, out
    reply = out[back + len("[agent back: resuming the turn]\n") : done]
    assert reply.strip(), f"no reply streamed:\n{out}"

    woken = wait_until(lambda: _ready_pod(kind), "the woken Agent's Pod")
    assert woken["metadata"]["uid"] != pod["metadata"]["uid"]
    found = kind.exec(NS, woken["metadata"]["name"], "harness", "cat", f"/workspace/{name}")
    assert found.strip() == content, "the workspace written before the suspend is kept"
