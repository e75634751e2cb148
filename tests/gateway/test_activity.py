"""When the gateway writes status.lastActivityTime, against an API server played in-process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from paddock.kubeobj import timestamp
from paddock_gateway.activity import Activity, heartbeat_seconds
from paddock_gateway.errors import AgentNotFoundError
from paddock_gateway.kube import GatewayKubeClient
from paddock_testing.wait import wait_until

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
STATUS = "/apis/paddock.dev/v1alpha1/namespaces/ns/agents/coder/status"


class FakeApi:
    """One Agent, ns/coder, and every request the gateway's client makes about it."""

    def __init__(self) -> None:
        self.agent: dict[str, Any] = {
            "metadata": {"namespace": "ns", "name": "coder"},
            "spec": {"lifecycle": {"idleAfter": "10s"}},
            "status": {},
        }
        self.requests: list[httpx.Request] = []
        self.written: list[datetime] = []
        """The lastActivityTime of each status patch accepted, in order."""
        self.down = False
        self.deleted = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.deleted:
            return httpx.Response(404, json={"kind": "Status", "reason": "NotFound"})
        if self.down:
            return httpx.Response(503, text="etcdserver: request timed out")
        if request.method == "PATCH":
            assert request.url.path == STATUS
            assert request.headers["content-type"] == "application/merge-patch+json"
            status = json.loads(request.content)["status"]
            self.written.append(timestamp(status["lastActivityTime"]))
            self.agent["status"] |= status
        return httpx.Response(200, json=self.agent)

    def idle_suspended(self, at: datetime) -> None:
        """Played operator: suspended for being idle at `at` (its clock)."""
        self.agent["status"]["idleSuspendTime"] = at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest_asyncio.fixture
async def kube(api: FakeApi) -> AsyncIterator[GatewayKubeClient]:
    transport = httpx.MockTransport(api.handle)
    client = GatewayKubeClient(httpx.AsyncClient(base_url="https://api.test", transport=transport))
    yield client
    await client.aclose()


class Clock:
    """The gateway's wall clock, set by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def touch(activity: Activity, kube: GatewayKubeClient) -> None:
    """A message posted: the route reads the Agent, then touches it."""
    await activity.touch("ns", "coder", await kube.agent("ns", "coder"))


@pytest.mark.parametrize(
    ("idle_after", "seconds"),
    [(10, 2.5), (120, 30), (3600, 60), (2, 1), (None, 60)],
)
def test_heartbeat_is_a_quarter_of_idle_after_within_a_second_and_a_minute(
    idle_after: float | None, seconds: float
) -> None:
    assert heartbeat_seconds(idle_after) == seconds


@pytest.mark.asyncio
async def test_an_agent_reads_as_its_suspend_and_idle_after_in_seconds(
    api: FakeApi, kube: GatewayKubeClient
) -> None:
    api.agent["spec"] = {"suspend": True, "lifecycle": {"idleAfter": "1h30m"}}
    api.idle_suspended(NOW)
    state = await kube.agent("ns", "coder")
    assert (state.suspended, state.idle_after) == (True, 5400.0)
    assert state.status.idle_suspend_time == NOW
    assert not state.idle_suspended  # a person's suspend wins: a message does not wake it


@pytest.mark.asyncio
async def test_an_agent_without_idle_after_is_never_written(
    api: FakeApi, kube: GatewayKubeClient
) -> None:
    api.agent["spec"] = {}
    activity = Activity(kube, touch_gap=0, pace=lambda _: 0.01)
    await touch(activity, kube)
    heartbeat = activity.heartbeat("ns", "coder")
    heartbeat.start()
    await wait_until(lambda: activity.pending == 0, "the heartbeat to find nothing to do")
    heartbeat.stop()
    assert {r.method for r in api.requests} == {"GET"}


@pytest.mark.asyncio
async def test_messages_within_a_second_write_once(
    api: FakeApi, kube: GatewayKubeClient, clock: Clock
) -> None:
    activity = Activity(kube, clock=clock)
    for _ in range(3):
        await touch(activity, kube)
    assert api.written == [NOW]


@pytest.mark.asyncio
async def test_a_wake_is_written_after_idle_suspend_time_when_the_gateways_clock_is_behind(
    api: FakeApi, kube: GatewayKubeClient, clock: Clock
) -> None:
    suspended_at = NOW + timedelta(seconds=30)  # the operator's clock runs 30 s ahead
    api.idle_suspended(suspended_at)
    activity = Activity(kube, clock=clock)
    await touch(activity, kube)
    assert api.written == [suspended_at + timedelta(milliseconds=1)]
    # A heartbeat afterwards never writes an earlier time, which would undo the wake.
    await activity.record("ns", "coder", gap=0)
    assert api.written[-1] == suspended_at + timedelta(milliseconds=1)


@pytest.mark.asyncio
async def test_a_wake_right_after_a_write_is_not_swallowed_by_the_one_second_gap(
    api: FakeApi, kube: GatewayKubeClient, clock: Clock
) -> None:
    activity = Activity(kube, clock=clock)
    await touch(activity, kube)
    api.idle_suspended(NOW + timedelta(milliseconds=500))
    await touch(activity, kube)
    assert api.written == [NOW, NOW + timedelta(milliseconds=501)]


@pytest.mark.asyncio
async def test_a_failed_write_is_logged_not_raised_and_the_next_message_writes_again(
    api: FakeApi, kube: GatewayKubeClient, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    activity = Activity(kube, clock=clock)
    state = await kube.agent("ns", "coder")
    api.down = True
    await activity.touch("ns", "coder", state)
    assert "ns/coder: activity not recorded" in caplog.text
    assert "503" in caplog.text
    api.down = False
    await activity.touch("ns", "coder", state)
    assert api.written == [NOW]


@pytest.mark.asyncio
async def test_a_write_for_a_deleted_agent_is_not_an_error(
    api: FakeApi, kube: GatewayKubeClient
) -> None:
    api.deleted = True
    with pytest.raises(AgentNotFoundError):
        await kube.record_activity("ns", "coder", NOW)
    await Activity(kube).record("ns", "coder", gap=0)  # logged, not raised


@pytest.mark.asyncio
async def test_a_heartbeat_writes_while_the_stream_lasts_and_once_more_when_it_ends(
    api: FakeApi, kube: GatewayKubeClient, clock: Clock
) -> None:
    activity = Activity(kube, clock=clock, touch_gap=0, pace=lambda _: 0.02)

    async def stream() -> AsyncIterator[bytes]:
        while True:
            clock.now += timedelta(seconds=1)
            yield b": keep-alive\n\n"

    body = activity.heartbeat("ns", "coder").around(stream())
    await anext(body)
    await wait_until(lambda: len(api.written) >= 3, "three heartbeats")
    await body.aclose()  # the client went away
    ended = len(api.written)
    await wait_until(lambda: activity.pending == 0, "the heartbeat to stop")
    assert len(api.written) == ended + 1
    assert api.written == sorted(api.written)
