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


def _vault(_args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415

    from paddock_vault.app import run  # noqa: PLC0415
    from paddock_vault.settings import VaultSettings  # noqa: PLC0415

    try:
        settings = VaultSettings()
    except ValidationError as error:
        sys.stderr.write(f"paddock vault: invalid PADDOCK_VAULT_* settings\n{error}\n")
        return 2
    return run(settings)


def _egress(_args: argparse.Namespace) -> int:
    from paddock import egress  # noqa: PLC0415

    sys.stdout.write(egress.render_script())
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line, with one subcommand per tool."""
    top = argparse.ArgumentParser(prog="paddock", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="print or write the CustomResourceDefinitions")
    crds.add_argument("--output", metavar="DIR", help="write into DIR instead of printing")
    crds.set_defaults(run=_crds)

    vault = commands.add_parser(
        "vault", help="run the vault sidecar (settings from PADDOCK_VAULT_* variables)"
    )
    vault.set_defaults(run=_vault)
    egress = commands.add_parser("egress-script", help="print the Pod's egress iptables script")
    egress.set_defaults(run=_egress)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
