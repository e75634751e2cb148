"""Driving a session's turns on its Agent's runner, through runner restarts and idle wakes,
under a lease."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from paddock.protocol import TurnRequest
from paddock_gateway.activity import Activity, needs_wake
from paddock_gateway.agents import Agents, ready_endpoint, suspended_by_spec
from paddock_gateway.errors import AgentNotFoundError, UnavailableError
from paddock_gateway.kube import AgentState
from paddock_gateway.metrics import Metrics
from paddock_gateway.runner_client import RunnerClient, RunnerGoneError, RunnerPool
from paddock_gateway.settings import GatewaySettings
from paddock_gateway.store import LeaseLostError, SessionGoneError, SessionInfo, Store, Turn

log = logging.getLogger(__name__)


async def cancel_turn(
    agents: Agents, runners: RunnerPool, namespace: str, agent: str, turn_id: str
) -> None:
    """Ask the Agent's runner to stop the turn (a deleted session's), if the Agent is Ready.

    Best effort: when the runner cannot be told now, the session's driver tells it once it
    finds the session gone.
    """
    try:
        endpoint = await agents.endpoint(namespace, agent)
    except (AgentNotFoundError, UnavailableError):
        return
    if endpoint:
        await runners.get(endpoint).cancel(turn_id)


@dataclass
class _Progress:
    """Which incarnation runs the turn, and the last of its events stored."""

    incarnation: str
    seq: int
    restarting: bool = False
    waking: bool = False


class TurnDriver:
    """Runs the session's queued turns one after another while this replica holds the lease."""

    def __init__(
        self, store: Store, agents: Agents, activity: Activity, runners: RunnerPool,
        settings: GatewaySettings, *, session: SessionInfo, token: str,
        metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.metrics = metrics or Metrics()
        self.agents = agents
        self.activity = activity
        self.runners = runners
        self.settings = settings
        self.session = session
        self.token = token

    async def run(self) -> None:
        """Drive turns until none is left (the lease is then given up) or the lease is lost."""
        # Driving is use of the Agent, waits for it included: a long turn never idles out.
        heartbeat = self.activity.heartbeat(self.session.namespace, self.session.agent)
        heartbeat.start()
        drive = asyncio.create_task(self._drive_all())
        renew = asyncio.create_task(self._renew())
        try:
            done, _ = await asyncio.wait({drive, renew}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        except SessionGoneError:
            log.info("session %s: deleted, its turn stopped", self.session.id)
        except LeaseLostError:
            log.info("session %s: lease lost, another replica drives it", self.session.id)
        finally:
            for task in (drive, renew):
                task.cancel()
            await asyncio.gather(drive, renew, return_exceptions=True)
            heartbeat.stop()
            # Harmless when idle or lost: only the holder's token deletes the lease.
            await self._release()

    async def _release(self) -> None:
        try:
            await asyncio.shield(self.store.release(self.session.id, self.token))
        except Exception:  # the lease expires by itself anyway
            log.warning("session %s: could not release its lease", self.session.id)

    async def _renew(self) -> None:
        ttl = self.settings.lease_seconds
        while True:
            await asyncio.sleep(ttl / 3)
            if not await self.store.renew(self.session.id, self.token, ttl):
                raise LeaseLostError(self.session.id)

    async def _drive_all(self) -> None:
        while (turn := await self.store.next_turn(self.session.id, self.token)) is not None:
            with self.metrics.driving():
                await self._drive(turn)

    async def _drive(self, turn: Turn) -> None:
        """Run one turn to its turn_end, across as many runner incarnations as it takes."""
        progress = _Progress(turn.incarnation, turn.seq)
        deadline = asyncio.get_running_loop().time() + self.settings.restart_timeout_seconds
        while True:
            try:
                agent = await self._agent()
            except AgentNotFoundError:
                await self._fail(turn, "the agent was deleted")
                return
            if agent is not None and agent.suspended:  # a person's suspend: nothing to wait for
                namespace, name = self.session.namespace, self.session.agent
                await self._fail(turn, suspended_by_spec(namespace, name))
                return
            runner = self._runner(agent)
            if runner is not None:
                try:
                    if await self._attempt(runner, turn, progress):
                        return
                except RunnerGoneError as gone:
                    log.info("session %s: %s", self.session.id, gone)
                    if progress.incarnation and await self._same(runner, progress.incarnation):
                        self.metrics.runner_reconnect()  # the same runner: no restart to wait out
                        await asyncio.sleep(self.settings.agent_poll_seconds)
                        continue
            if asyncio.get_running_loop().time() > deadline:
                await self._fail(turn, "the agent did not become Ready again in time")
                return
            await self._not_ready(agent, progress)
            await asyncio.sleep(self.settings.agent_poll_seconds)

    async def _fail(self, turn: Turn, reason: str) -> None:
        log.warning("session %s: turn %s failed: %s", self.session.id, turn.turn_id, reason)
        await self.store.fail_turn(self.session.id, self.token, turn.turn_id, reason)

    async def _agent(self) -> AgentState | None:
        """The Agent now, None when the API cannot tell; AgentNotFoundError if it is gone."""
        try:
            return await self.agents.read(self.session.namespace, self.session.agent)
        except UnavailableError as error:
            log.warning("session %s: %s", self.session.id, error.detail)
            return None

    def _runner(self, agent: AgentState | None) -> RunnerClient | None:
        """The Agent's runner if it is Ready."""
        endpoint = ready_endpoint(agent.status) if agent else None
        return self.runners.get(endpoint) if endpoint else None

    async def _same(self, runner: RunnerClient, incarnation: str) -> bool:
        try:
            return (await runner.health()).incarnation == incarnation
        except RunnerGoneError:
            return False

    async def _not_ready(self, agent: AgentState | None, progress: _Progress) -> None:
        """Tell the session why it waits, once; wake the Agent if it was suspended for idling."""
        if agent is not None and (agent.idle_suspended or agent.waking):
            # Waking: a message's own write may have woken it before this first look.
            await self._waking(agent, progress)
        elif not progress.waking:  # once woken, the Agent is Starting: not a restart
            await self._restarting(progress)

    async def _waking(self, agent: AgentState, progress: _Progress) -> None:
        if not progress.waking:
            progress.waking = True
            self.metrics.agent_wait("waking")
            await self.store.append(
                self.session.id, "agent_waking",
                {"reason": "the agent was suspended after being idle; waking it"},
                token=self.token, state="agent_waking",
            )  # fmt: skip
        # Again while the status shows no activity after the suspend: a write failed, or the
        # operator suspended it again after ours.
        if needs_wake(agent):
            await self.activity.touch(self.session.namespace, self.session.agent, agent)

    async def _restarting(self, progress: _Progress) -> None:
        if progress.restarting:
            return
        progress.restarting = True
        self.metrics.agent_wait("restarting")
        await self.store.append(
            self.session.id, "agent_restarting",
            {"reason": "the agent's runner went away; waiting for the Agent to be Ready"},
            token=self.token, state="agent_restarting",
        )  # fmt: skip

    async def _attempt(self, runner: RunnerClient, turn: Turn, progress: _Progress) -> bool:
        """(Re)start the turn on this runner and store its events; True once it ended."""
        history = await self.store.history(self.session.id)
        request = TurnRequest(
            session_id=self.session.id,
            turn_id=turn.turn_id,
            messages=[*history, turn.message],
            model=turn.model or self.session.model,
        )
        accepted = await runner.start(request)
        try:
            return await self._follow(runner, turn, progress, accepted.incarnation)
        except SessionGoneError:
            # The delete asked the runner to cancel too, but it may have come before this start.
            await runner.cancel(turn.turn_id)
            raise

    async def _follow(
        self, runner: RunnerClient, turn: Turn, progress: _Progress, incarnation: str
    ) -> bool:
        """Store the events of the turn the runner accepted; True once it ended."""
        if await self.store.begin_incarnation(
            self.session.id, self.token, turn.turn_id, incarnation
        ):
            progress.incarnation, progress.seq = incarnation, 0
        if progress.restarting or progress.waking:
            progress.restarting = progress.waking = False
            await self.store.append(
                self.session.id, "agent_ready", {"incarnation": incarnation},
                token=self.token, state="running",
            )  # fmt: skip
        pump = asyncio.create_task(self._pump(runner, turn, progress))
        watch = asyncio.create_task(self._watch(runner, progress.incarnation))
        try:
            done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            return (pump if pump in done else watch).result()
        finally:
            pump.cancel()
            watch.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)

    async def _pump(self, runner: RunnerClient, turn: Turn, progress: _Progress) -> bool:
        async for batch in runner.events(turn.turn_id, progress.seq):
            verdict, progress.seq = await self.store.ingest(
                self.session.id, self.token, turn, progress.incarnation, batch
            )
            if verdict == "ended":
                return True
            if verdict == "gap":
                raise RunnerGoneError(f"events after {progress.seq} skipped a number")
        raise RunnerGoneError("the event stream ended early")

    async def _watch(self, runner: RunnerClient, incarnation: str) -> bool:
        """Raise RunnerGoneError when the runner stops answering or is another incarnation."""
        while True:
            await asyncio.sleep(self.settings.runner_health_seconds)
            health = await runner.health()
            if health.incarnation != incarnation:
                raise RunnerGoneError(f"runner {incarnation} was replaced by {health.incarnation}")
