"""The `paddock` command: one entry point for every component and tool."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from paddock.api import crd  # noqa: PLC0415 - each command imports only what it runs

    if args.output is None:
        sys.stdout.write(crd.render())
    else:
        crd.write(Path(args.output))
    return 0


def _gateway(_: argparse.Namespace) -> int:
    from paddock_gateway.serve import serve  # noqa: PLC0415
    from paddock_gateway.settings import GatewaySettings  # noqa: PLC0415

    serve(GatewaySettings())
    return 0


def _chat(args: argparse.Namespace) -> int:
    from paddock_gateway import chat  # noqa: PLC0415

    token = args.token or os.environ.get("PADDOCK_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        sys.stderr.write(
            "paddock chat: a token is needed: --token-file, --token or PADDOCK_TOKEN\n"
        )
        return 2
    urls = args.gateway or [os.environ.get("PADDOCK_GATEWAY_URL", "http://localhost:8000")]
    return chat.main(urls, token, args.namespace, args.agent, args.session)


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

    sys.stdout.write(egress.iptables_script())
    return 0


def _egress_check(args: argparse.Namespace) -> int:
    from paddock import egress_check  # noqa: PLC0415

    if args.port is None:
        from paddock.sandbox import VAULT_TRANSPARENT_PORT  # noqa: PLC0415

        args.port = VAULT_TRANSPARENT_PORT
    try:
        egress_check.check(port=args.port)
    except egress_check.NotRedirectedError as error:
        sys.stderr.write(f"paddock egress-check: {error}\n")
        return 1
    sys.stderr.write("paddock egress-check: outbound TCP reaches the vault's port\n")
    return 0


def _cni_install(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from paddock import cni_install  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    node = cni_install.Node(
        bin_dir=Path(args.cni_bin_dir),
        conf_dir=Path(args.cni_conf_dir),
        plugin=Path(args.plugin) if args.plugin else cni_install.default_plugin(),
        iptables=args.iptables,
        ip6tables=args.ip6tables,
    )
    return cni_install.run(node, ready_file=Path(args.ready_file), interval=args.interval)


def _operator(args: argparse.Namespace) -> int:
    from paddock_operator.main import run  # noqa: PLC0415

    run(
        namespaces=args.namespace,
        standalone=args.standalone,
        liveness=args.liveness,
        verbose=args.verbose,
    )
    return 0


def _runner(_: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from paddock_runner.main import serve  # noqa: PLC0415
    from paddock_runner.settings import RunnerSettings  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(RunnerSettings()))
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    from paddock.models.tiny import write_tiny_llama  # noqa: PLC0415

    name = args.name or f"tiny-{args.seed}"
    path = write_tiny_llama(Path(args.out) / f"{name}.gguf", seed=args.seed)
    sys.stdout.write(f"{path}\n")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line, with one subcommand per tool."""
    top = argparse.ArgumentParser(prog="paddock", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crds = commands.add_parser("crds", help="print or write the CustomResourceDefinitions")
    crds.add_argument("--output", metavar="DIR", help="write into DIR instead of printing")
    crds.set_defaults(run=_crds)

    gateway = commands.add_parser(
        "gateway", help="serve the session gateway (settings: PADDOCK_GATEWAY_* variables)"
    )
    gateway.set_defaults(run=_gateway)

    chat = commands.add_parser("chat", help="talk to an Agent through the gateway")
    chat.add_argument("agent", help="name of the Agent")
    chat.add_argument("-n", "--namespace", default="default", help="the Agent's namespace")
    chat.add_argument("--session", help="resume this session instead of opening a new one")
    chat.add_argument(
        "--gateway",
        action="append",
        metavar="URL",
        help="gateway URL (repeat for replicas; default $PADDOCK_GATEWAY_URL)",
    )
    chat.add_argument("--token", help="bearer token (default $PADDOCK_TOKEN)")
    chat.add_argument("--token-file", help="read the bearer token from this file")
    chat.set_defaults(run=_chat)

    vault = commands.add_parser(
        "vault", help="run the vault sidecar (settings from PADDOCK_VAULT_* variables)"
    )
    vault.set_defaults(run=_vault)
    egress = commands.add_parser("egress-script", help="print the Pod's egress iptables script")
    egress.set_defaults(run=_egress)
    check = commands.add_parser(
        "egress-check", help="exit 1 unless this Pod's outbound TCP is redirected (CNI mode)"
    )
    check.add_argument(
        "--port", type=int, default=None, help="the vault's transparent port (default: 15006)"
    )
    check.set_defaults(run=_egress_check)
    install = commands.add_parser(
        "cni-install", help="chain the paddock-egress CNI plugin on this node until stopped"
    )
    install.add_argument("--cni-bin-dir", default="/host/opt/cni/bin")
    install.add_argument("--cni-conf-dir", default="/host/etc/cni/net.d")
    install.add_argument("--plugin", help="the plugin binary to install (default: the image's)")
    install.add_argument("--iptables", default="iptables", help="the node's iptables command")
    install.add_argument("--ip6tables", default="ip6tables", help="the node's ip6tables command")
    install.add_argument("--ready-file", default="/tmp/paddock-cni-ready")  # noqa: S108
    install.add_argument("--interval", type=float, default=1.0, help="seconds between syncs")
    install.set_defaults(run=_cni_install)

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

    runner = commands.add_parser(
        "runner", help="serve the session protocol in the harness container (PADDOCK_RUNNER_*)"
    )
    runner.set_defaults(run=_runner)

    models = commands.add_parser("models", help="model files").add_subparsers(
        dest="models_command", required=True, metavar="MODELS_COMMAND"
    )
    tiny = models.add_parser("tiny", help="write a tiny random-weight llama GGUF (tests, demo)")
    tiny.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    tiny.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    tiny.add_argument("--name", help="model name: the file is NAME.gguf (default tiny-SEED)")
    tiny.set_defaults(run=_tiny_model)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
