"""The `paddock` command: one entry point for every component and tool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from paddock.api import crd  # noqa: PLC0415 - each command imports only what it runs

    if args.output is None:
        sys.stdout.write(crd.render())
    else:
        crd.write(Path(args.output))
    return 0


def _operator(args: argparse.Namespace) -> int:
    from paddock_operator.main import run  # noqa: PLC0415

    run(
        namespaces=args.namespace,
        standalone=args.standalone,
        liveness=args.liveness,
        verbose=args.verbose,
    )
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line, with one subcommand per tool."""
    top = argparse.ArgumentParser(prog="paddock", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="print or write the CustomResourceDefinitions")
    crds.add_argument("--output", metavar="DIR", help="write into DIR instead of printing")
    crds.set_defaults(run=_crds)

    operator = commands.add_parser("operator", help="run the operator (reconciles Agents)")
    operator.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only this namespace (repeat)"
    )
    operator.add_argument(
        "--standalone", action="store_true", help="no peering: for a single replica"
    )
    operator.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    operator.add_argument("-v", "--verbose", action="store_true", help="log every API call")
    operator.set_defaults(run=_operator)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
