"""The operator's Prometheus metrics, served at /metrics on settings.metrics_port.

Every label takes its values from a small fixed set (outcome, phase, verb, resource, code class,
reason), so the number of series does not grow with the cluster, and no label can carry anything
read from a Secret. The one exception is paddock_operator_agent_phase, one series per Agent and
phase (as kube-state-metrics has per Pod): what an alert on one Agent that stays not Ready needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from paddock.kubeobj import timestamp

PHASES = ("Pending", "Starting", "Ready", "Suspended", "Failed")
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
START_BUCKETS = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def resource_of(url: str) -> str:
    """The resource (plural, and /subresource) a REST path names: /api/v1/namespaces/ns/pods/p/
    status -> pods/status. Query strings and object names are dropped."""
    parts = [p for p in url.split("?", 1)[0].split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]  # drop api/v1 or apis/group/version
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "namespaces" if "namespaces" in parts else "unknown"
    return f"{rest[0]}/{rest[2]}" if len(rest) >= 3 else rest[0]


def code_class(status: int) -> str:
    """2xx, 4xx, 5xx, or `error` for no answer at all (status 0)."""
    return f"{status // 100}xx" if status else "error"


AgentPhases = Callable[[], Iterable[tuple[str, str, str]]]
"""(namespace, name, phase) of each Agent the operator knows."""


class _AgentPhases(Collector):
    """Agents by phase, and each Agent's phase, read at each scrape from the operator's memory."""

    def __init__(self, phases: AgentPhases) -> None:
        self.phases = phases

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "paddock_operator_agents", "Agents by the phase of their status", labels=["phase"]
        )
        each = GaugeMetricFamily(
            "paddock_operator_agent_phase",
            "1 for the phase of each Agent's status, else 0",
            labels=["namespace", "agent", "phase"],
        )
        counts = dict.fromkeys(PHASES, 0)
        for namespace, name, phase in self.phases():
            counts[phase] = counts.get(phase, 0) + 1
            for one in PHASES:
                each.add_metric([namespace, name, one], 1 if one == phase else 0)
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family
        yield each


class OperatorMetrics:
    """The operator's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconciles = Histogram(
            "paddock_operator_reconcile_duration_seconds",
            "Reconciles of one Agent, by outcome: ok, wait (retried later), error (the API "
            "server), bug (anything else)",
            ["outcome"],
            registry=self.registry,
            buckets=API_BUCKETS,
        )
        self.api_requests = Histogram(
            "paddock_operator_api_request_duration_seconds",
            "The operator's requests to the API server, by verb, resource and code class",
            ["verb", "resource", "code"],
            registry=self.registry,
            buckets=API_BUCKETS,
        )
        self.sandbox_start = Histogram(
            "paddock_operator_sandbox_start_seconds",
            "From a sandbox Pod's creation to its Ready condition (whole seconds, as the API "
            "server keeps them), once per Pod",
            registry=self.registry,
            buckets=START_BUCKETS,
        )
        self.replaced = Counter(
            "paddock_operator_sandbox_pods_replaced_total",
            "Sandbox Pods the operator deleted to make them anew, by reason",
            ["reason"],
            registry=self.registry,
        )

    def count_phases(self, phases: AgentPhases) -> None:
        """Serve `paddock_operator_agents` and `_agent_phase` from phases(), at each scrape."""
        self.registry.register(_AgentPhases(phases))

    def api_request(self, verb: str, url: str, status: int, seconds: float) -> None:
        """One request to the API server (status 0: no answer)."""
        self.api_requests.labels(verb.lower(), resource_of(url), code_class(status)).observe(
            seconds
        )

    def pod_ready(self, created: str, ready: str) -> None:
        """A sandbox Pod became Ready: creationTimestamp and the Ready condition's time."""
        seconds = (timestamp(ready) - timestamp(created)).total_seconds()
        if seconds >= 0:  # a clock that went back says nothing about startup
            self.sandbox_start.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: OperatorMetrics, host: str, port: int) -> web.AppRunner:
    """Serve /metrics until the returned runner is cleaned up."""

    async def scrape(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
