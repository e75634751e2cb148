"""Counters the admin port serves as Prometheus text: requests, blocks, bytes, latency.

Labels take values from small fixed sets (mode, outcome, reason, direction), never a host, a path
or a header, so a metric can hold neither a secret nor an unbounded number of series.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, value)] += 1
        self.total += value


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


class Metrics:
    """The sidecar's metrics, updated in place by the request path."""

    def __init__(self) -> None:
        self.requests: Counter[Labels] = Counter()
        self.blocks: Counter[Labels] = Counter()
        self.bytes: Counter[Labels] = Counter()
        self.reloads: Counter[Labels] = Counter()
        self.latency: dict[Labels, _Histogram] = {}
        self.connections = 0
        self.leaves_minted = 0

    def request(self, mode: str, outcome: str, seconds: float | None = None) -> None:
        """Count one request (or tunnel) and, when forwarded, how long it took."""
        key = (("mode", mode), ("outcome", outcome))
        self.requests[key] += 1
        if seconds is not None:
            self.latency.setdefault((("mode", mode),), _Histogram()).observe(seconds)

    def block(self, mode: str, reason: str) -> None:
        """Count a refusal by reason."""
        self.blocks[(("mode", mode), ("reason", reason))] += 1

    def transfer(self, direction: str, count: int) -> None:
        """Count bytes relayed, by direction (upstream_sent, upstream_received)."""
        self.bytes[(("direction", direction),)] += count

    def reload(self, ok: bool) -> None:
        """Count a configuration reload."""
        self.reloads[(("result", "ok" if ok else "error"),)] += 1

    def render(self) -> str:
        """The Prometheus text exposition format."""
        lines: list[str] = []

        def counter(name: str, help_text: str, values: Counter[Labels]) -> None:
            lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} counter"))
            lines.extend(f"{name}{_labels(k)} {v}" for k, v in sorted(values.items()))

        counter("paddock_vault_requests_total", "Requests and tunnels by outcome.", self.requests)
        counter("paddock_vault_blocks_total", "Refusals by reason.", self.blocks)
        counter("paddock_vault_bytes_total", "Body bytes relayed.", self.bytes)
        counter("paddock_vault_config_reloads_total", "Configuration reloads.", self.reloads)
        name = "paddock_vault_request_duration_seconds"
        lines.extend((f"# HELP {name} Forwarded request latency.", f"# TYPE {name} histogram"))
        for key, hist in sorted(self.latency.items()):
            running = 0
            for bound, count in zip((*_BUCKETS, "+Inf"), hist.counts, strict=True):
                running += count
                lines.append(f"{name}_bucket{_labels((*key, ('le', str(bound))))} {running}")
            lines.append(f"{name}_sum{_labels(key)} {hist.total}")
            lines.append(f"{name}_count{_labels(key)} {running}")
        for gauge, value, help_text in (
            ("paddock_vault_connections", self.connections, "Open client connections."),
            ("paddock_vault_leaves_minted_total", self.leaves_minted, "Leaf certificates minted."),
        ):
            kind = "counter" if gauge.endswith("_total") else "gauge"
            lines.extend(
                (f"# HELP {gauge} {help_text}", f"# TYPE {gauge} {kind}", f"{gauge} {value}")
            )
        return "\n".join(lines) + "\n"
