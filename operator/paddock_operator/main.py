"""`paddock operator`: run the operator (also the operator image's entrypoint)."""

from __future__ import annotations

import kopf


def run(
    *, namespaces: list[str], standalone: bool, liveness: str | None, verbose: bool = False
) -> None:
    """Run the kopf operator for the given namespaces (all when empty) until stopped."""
    from paddock_operator import handlers  # noqa: F401, PLC0415 - registers the handlers

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=standalone,
        liveness_endpoint=liveness,
        memo=kopf.Memo(namespaces=namespaces),
    )
