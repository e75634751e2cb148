"""The agent's tools on a real workspace: confinement, files, and real shell commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from paddock_runner.agent.tools import ToolError, Workspace

pytestmark = pytest.mark.integration


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "outside.txt").write_text("secret")
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root, shell_timeout_s=2, output_limit=100)


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../outside.txt", "link"])
@pytest.mark.asyncio
async def test_file_tools_refuse_paths_outside_the_workspace(ws: Workspace, path: str) -> None:
    (ws.root / "link").symlink_to(ws.root.parent / "outside.txt")

    with pytest.raises(ToolError, match="outside the workspace"):
        await ws.read(path)
    with pytest.raises(ToolError, match="outside the workspace"):
        await ws.write(path, "overwritten")
    assert (ws.root.parent / "outside.txt").read_text() == "secret"


@pytest.mark.asyncio
async def test_write_read_and_ls(ws: Workspace) -> None:
    await ws.write("src/app.py", "print('hi')\n")
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "HEAD").write_text("ref")

    assert (await ws.read("src/app.py")).output == "print('hi')\n"
    assert (await ws.ls()).output == "src/\nsrc/app.py"
    with pytest.raises(ToolError, match="not a file"):
        await ws.read("src")


@pytest.mark.asyncio
async def test_shell_runs_in_the_workspace_and_reports_the_exit_code(ws: Workspace) -> None:
    result = await ws.shell("pwd; echo err >&2; exit 4")

    assert result.output == f"{ws.root}\nerr\n"
    assert result.exit_code == 4


@pytest.mark.asyncio
async def test_shell_output_is_capped_and_a_hanging_command_is_killed(ws: Workspace) -> None:
    long = await ws.shell("yes | head -c 5000")
    hung = await ws.shell("sleep 30 & echo started; wait")

    assert long.output.startswith("y\ny\n")
    assert long.output.endswith("\n[... 4900 more bytes]")
    assert hung.exit_code == -9
    assert "no exit after 2s" in hung.output
