"""Idle suspend: when an Agent with spec.lifecycle.idleAfter has been unused long enough, and when
activity wakes it again.

Everything it decides from is on the Agent, so that neither an operator nor a gateway restart
moves the clock: the idle time counts from the later of the Ready condition's last transition to
True and status.lastActivityTime (which the gateway writes while the Agent is in use). Once the
operator suspends the Agent it writes status.idleSuspendTime; activity written after that time
wakes it. A person's spec.suspend always wins: it is never woken by traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from paddock.api.agent import AgentSpec, duration_seconds
from paddock.kubeobj import Obj, timestamp
from paddock_operator.status import find_condition


@dataclass(frozen=True)
class IdleState:
    """An Agent's idleness as of one moment."""

    suspended_at: datetime | None = None
    """Since when it is suspended for being idle (None: it is not, or it has been woken)."""
    check_in: float | None = None
    """Seconds until it will have been idle long enough, for a Ready Agent with a policy."""
    woken: bool = False
    """It was suspended for being idle, and activity since then wakes it."""


def status_time(status: Obj, field: str) -> datetime | None:
    """A time field of an Agent's status (lastActivityTime, idleSuspendTime), if it has one."""
    value = status.get(field)
    return timestamp(value) if value else None


def _woken(status: Obj) -> bool:
    """Whether the status holds activity later than its idle suspend (the gateway's wake)."""
    suspended = status_time(status, "idleSuspendTime")
    activity = status_time(status, "lastActivityTime")
    return suspended is not None and activity is not None and activity > suspended


def idle_state(spec: AgentSpec, status: Obj, now: datetime) -> IdleState:
    """Whether the Agent is (or is now to be) suspended for being idle, and when to look again."""
    if spec.suspend or spec.lifecycle.idle_after is None:
        return IdleState()
    suspended = status_time(status, "idleSuspendTime")
    if suspended is not None:
        return IdleState(woken=True) if _woken(status) else IdleState(suspended_at=suspended)
    ready = find_condition(status, "Ready") or {}
    if ready.get("status") != "True" or not ready.get("lastTransitionTime"):
        return IdleState()  # not usable yet: nobody could have used it
    since = timestamp(ready["lastTransitionTime"])
    activity = status_time(status, "lastActivityTime")
    if activity is not None and activity > since:
        since = activity
    deadline = since + timedelta(seconds=duration_seconds(spec.lifecycle.idle_after))
    if now >= deadline:
        return IdleState(suspended_at=now)
    return IdleState(check_in=(deadline - now).total_seconds())


def change_counts_as_use(spec: AgentSpec, status: Obj, generation: int) -> bool:
    """Whether a reconcile of this generation counts as use: a change of spec (setting the idle
    policy among them) restarts the idle clock, so that an Agent busy before it had a policy
    (the gateway records use only of Agents with one) is not suspended the moment it gets one.
    Not a new Agent (nobody can use it before it is Ready), nor one suspended for being idle
    (a change does not wake it)."""
    return bool(
        spec.lifecycle.idle_after
        and not spec.suspend
        and status.get("observedGeneration") not in (None, generation)
        and not status.get("idleSuspendTime")
    )


def wakes(body: Obj) -> bool:
    """Whether an Agent's status holds activity after its idle suspend (the gateway's wake)."""
    return _woken(body.get("status") or {})


def suspended_message(idle_after: str) -> str:
    """What the Ready condition and the Event say about an Agent suspended for being idle."""
    return (
        f"suspended after {idle_after} without activity (spec.lifecycle.idleAfter); "
        "the next message wakes it"
    )
