"""git over https through the vault: the stub in the URL becomes the real token (Basic auth)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from paddock_testing.vault import GITHUB_REAL, GITHUB_STUB, RunningVault, Upstream, require

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_git_clone_over_https(
    vault: RunningVault, upstream: Upstream, tmp_path: Path
) -> None:
    require("git")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip
    work, bare = tmp_path / "work", tmp_path / "repo.git"
    work.mkdir()
    await _git("init", "-q", "-b", "main", cwd=work, env=env)
    (work / "README").write_text("hello through the vault\n")
    await _git("add", "README", cwd=work, env=env)
    await _git("commit", "-qm", "first", cwd=work, env=env)
    await _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path, env=env)
    await _git("update-server-info", cwd=bare, env=env)
    upstream.git_root, upstream.git_token = bare, GITHUB_REAL.encode()

    url = f"https://x-access-token:{GITHUB_STUB}@git.test:{upstream.port}/repo.git"
    await _git(
        "-c", f"http.proxy={vault.proxy_url}", "-c", f"http.sslCAInfo={vault.certs.agent_ca_file}",
        "clone", "-q", url, "clone", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert (tmp_path / "clone" / "README").read_text() == "hello through the vault\n"
    authorized = [s for s in upstream.seen if s.header(b"authorization")]
    assert authorized, "git never sent credentials"
    assert all(GITHUB_STUB.encode() not in s.raw() for s in upstream.seen)
