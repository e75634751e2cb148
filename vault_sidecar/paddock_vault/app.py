"""The running sidecar: its listeners, the configuration watcher, and an orderly stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from paddock_vault import admin, clients, explicit, forward, logs, transparent
from paddock_vault.config import ConfigError, ConfigWatcher
from paddock_vault.conn import StreamConn
from paddock_vault.context import Context, Dialer
from paddock_vault.errors import VaultError
from paddock_vault.metrics import Metrics
from paddock_vault.netguard import NetGuard, Resolver, system_resolver
from paddock_vault.settings import VaultSettings

log = logging.getLogger(__name__)
Handler = Callable[[Context, StreamConn], Awaitable[None]]
_MAX_REFUSING = 32
_REFUSE_LINGER_SECONDS = 1.0


class Vault:
    """The vault sidecar; `async with Vault(settings)` runs it until the block ends."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        resolver: Resolver = system_resolver,
        dialer: Dialer = asyncio.open_connection,
    ) -> None:
        self.settings = settings
        if settings.unsafe_allow_cidrs:
            log.warning(
                "UNSAFE: PADDOCK_VAULT_UNSAFE_ALLOW_CIDRS lets the vault connect to %s; "
                "this is for tests only and must never be set in a Pod",
                ", ".join(map(str, settings.unsafe_allow_cidrs)),
            )
        if settings.internal_networks:
            log.info(
                "internal networks the cluster admin opened: %s",
                ", ".join(map(str, settings.internal_networks)),
            )
        metrics = Metrics()
        self.ctx = Context(
            settings=settings,
            watcher=ConfigWatcher(settings.config_file, on_reload=metrics.reload),
            guard=NetGuard(resolver, (*settings.internal_networks, *settings.unsafe_allow_cidrs)),
            dialer=dialer,
            metrics=metrics,
        )
        # The proxy and transparent listeners share one budget; the admin port has its own, so
        # the kubelet's probe is answered however many connections the agent holds.
        self._agent_budget = clients.Budget(
            settings.max_connections, settings.max_connections_per_client
        )
        self._admin_budget = clients.Budget(settings.admin_max_connections)
        self._refusing = 0
        self.servers: dict[str, list[asyncio.Server]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._unredact: Callable[[], None] | None = None

    def address(self, name: str) -> tuple[str, int]:
        """(host, port) a listener ("proxy", "transparent", "admin") is bound to."""
        sockname = self.servers[name][0].sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    def _client(self, name: str, writer: asyncio.StreamWriter) -> str | None:
        """Who opened a connection to an agent-facing listener (None on the admin port)."""
        if name == "admin":
            return None
        sock: socket.socket = writer.get_extra_info("socket")
        connected_to = sock.getsockname()[:2]
        if name == "transparent":
            with contextlib.suppress(OSError):
                connected_to = transparent.original_destination(sock)
        with contextlib.suppress(OSError):
            return clients.client_of(sock, connected_to)
        return None

    async def _refuse_connection(
        self, name: str, mode: str, why: str, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        self.ctx.metrics.block(mode, "connection_limit")
        log.debug("%s connection refused: %s", mode, why)
        # Explicit clients speak HTTP first: tell them why. The vault reads their request for a
        # moment (closing with it unread would reset the connection and lose the answer), but
        # only so many at once: past that, over the limit means just closed.
        if name == "proxy" and self._refusing < _MAX_REFUSING:
            self._refusing += 1
            try:
                error = VaultError(
                    f"connection refused: {why}", status=503, reason="connection_limit"
                )
                writer.write(forward.error_response(error, self.ctx.masker()))
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(_REFUSE_LINGER_SECONDS):
                        await reader.read(65536)
            finally:
                self._refusing -= 1
        writer.close()

    def _on_connect(self, name: str, handler: Handler) -> Callable[..., Awaitable[None]]:
        mode = {"proxy": explicit.MODE, "transparent": transparent.MODE}.get(name, name)
        budget = self._admin_budget if name == "admin" else self._agent_budget

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            client = self._client(name, writer)
            why = budget.admit(client)
            if why is not None:
                await self._refuse_connection(name, mode, why, reader, writer)
                return
            task = asyncio.current_task()
            assert task is not None  # noqa: S101 - a handler always runs in a task
            self._tasks.add(task)
            metrics = self.ctx.metrics
            metrics.connections = self._agent_budget.open
            conn = StreamConn(reader, writer)
            try:
                await handler(self.ctx, conn)
            except VaultError as error:
                self.ctx.refusal(error, mode, host=None)
            except (OSError, ssl.SSLError, TimeoutError) as error:
                log.debug("%s connection ended: %r", mode, error)
            except Exception:
                log.exception("%s connection failed", mode)
            finally:
                budget.release(client)
                metrics.connections = self._agent_budget.open
                self._tasks.discard(task)
                conn.close()

        return run

    async def _listen(self, name: str, hosts: list[str], port: int, handler: Handler) -> None:
        servers = []
        for host in hosts:
            try:
                servers.append(
                    await asyncio.start_server(self._on_connect(name, handler), host, port)
                )
            except OSError as error:
                # ::1 is missing where IPv6 is off; one address family is enough then.
                log.warning("%s listener on %s:%s not started: %s", name, host, port, error)
        if not servers:
            raise OSError(f"no {name} listener could be started on port {port}")
        self.servers[name] = servers

    async def start(self) -> None:
        """Open the listeners and start watching the configuration."""
        self._unredact = logs.install(self.ctx.redact)
        s = self.settings
        await self._listen("proxy", s.listen_hosts, s.proxy_port, explicit.handle)
        if s.transparent_port is not None:
            await self._listen(
                "transparent", s.listen_hosts, s.transparent_port, transparent.handle
            )
        await self._listen("admin", [s.admin_host], s.admin_port, admin.handle)
        ports = {srv.sockets[0].getsockname()[1] for srvs in self.servers.values() for srv in srvs}
        self.ctx.guard = NetGuard(self.ctx.guard.resolver, self.ctx.guard.allow, frozenset(ports))
        self._watch = asyncio.create_task(self.ctx.watcher.run(s.reload_interval))
        log.info("vault listening: %s", {n: self.address(n) for n in self.servers})

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give open connections `grace` seconds, then cancel them."""
        for servers in self.servers.values():
            for server in servers:
                server.close()
        if self._watch is not None:
            self._watch.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        for servers in self.servers.values():
            for server in servers:
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        if self._unredact is not None:
            self._unredact()

    async def __aenter__(self) -> Vault:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(grace=0.5)


async def _serve(settings: VaultSettings) -> None:
    vault = Vault(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with vault:
        await stop.wait()


def run(settings: VaultSettings) -> int:
    """Run the sidecar until SIGTERM; 2 when its configuration cannot be loaded."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        asyncio.run(_serve(settings))
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 2
    return 0
