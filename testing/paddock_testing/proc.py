"""Small process and socket helpers shared by the test infrastructure."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path


def script_exports(script: Path) -> dict[str, str]:
    """What a build script of hack/ or kind/ exports: it prints `export NAME=value` lines (and
    builds what is missing first, once per machine)."""
    out = subprocess.run(  # noqa: S603 - the repository's own scripts
        [str(script)], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"^export (\w+)=(.*)$", out, flags=re.MULTILINE))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM a process and wait; SIGKILL it if it is still there after timeout seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def gone(pid: int) -> bool:
    """Whether no process has this pid any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def iptables_commands() -> tuple[str, str]:
    """(iptables, ip6tables) that work on this kernel, legacy first (no modules to load).

    Fails (not skips) when neither is there: hack/host-deps.sh installs them.
    """
    for v4, v6 in (("iptables-legacy", "ip6tables-legacy"), ("iptables", "ip6tables")):
        if shutil.which(v4) and shutil.which(v6):
            return v4, v6
    raise AssertionError("iptables is missing: run hack/host-deps.sh")
