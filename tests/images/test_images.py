"""paddock's container images, built by images/build.sh and run the way the operator's rendered
Pods and the chart run them."""

from __future__ import annotations

import functools
import http.server
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from paddock import pki, sandbox
from paddock.api.agent import AgentSpec
from paddock.models.tiny import write_tiny_llama
from paddock_operator.render.model import model_server
from paddock_operator.render.objects import AGENT_CA_FILE
from paddock_operator.render.pod import AGENT_CA_DIR, egress_init_container
from paddock_operator.settings import OperatorSettings
from paddock_testing.agents import minimal_agent
from paddock_testing.wait import wait_for, wait_http

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "images" / "build.sh"
# Debian's client talks to Debian's daemon; a newer client earlier in PATH may want buildx.
DOCKER = (
    "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker") or "docker"
)
VERSION = yaml.safe_load((REPO / "charts" / "paddock" / "Chart.yaml").read_text())["appVersion"]


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the docker client; on failure, the error carries its output."""
    done = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... failed:\n{done.stdout}{done.stderr}")
    return done


def inspect(ref: str) -> dict[str, Any]:
    """`docker inspect` of one image or container."""
    doc: dict[str, Any] = json.loads(docker("inspect", ref).stdout)[0]
    return doc


def build_images() -> subprocess.CompletedProcess[str]:
    """images/build.sh with this interpreter's environment; its table goes to stderr."""
    env = os.environ | {"PYTHON": sys.executable, "DOCKER": DOCKER}
    return subprocess.run(
        [str(BUILD)], capture_output=True, text=True, env=env, timeout=1800, check=False
    )


@dataclass(frozen=True)
class Images:
    """The images' references: images["vault"] is paddock/vault:<appVersion>."""

    prefix: str = "paddock"
    version: str = VERSION

    def __getitem__(self, name: str) -> str:
        return f"{self.prefix}/{name}:{self.version}"


@pytest.fixture(scope="session")
def images() -> Images:
    """Every image, built by images/build.sh or found up to date. No docker fails the test."""
    if shutil.which(DOCKER) is None:
        pytest.fail("docker is not installed: hack/docker.sh installs and starts it")
    info = docker("info", check=False)
    if info.returncode != 0:
        pytest.fail(
            f"docker does not answer (hack/docker.sh installs and starts it):\n{info.stderr}"
        )
    build = build_images()
    if build.returncode != 0:
        pytest.fail(f"images/build.sh failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}")
    return Images()


def security_flags(context: dict[str, Any]) -> list[str]:
    """docker run flags for a rendered container securityContext."""
    flags = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    flags += [f"--cap-drop={cap}" for cap in context["capabilities"].get("drop", [])]
    flags += [f"--cap-add={cap}" for cap in context["capabilities"].get("add", [])]
    if context.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    return flags


@dataclass
class Container:
    """A detached container the test started."""

    name: str

    @property
    def ip(self) -> str:
        """Its address on docker's bridge, which the host reaches as a kubelet reaches a Pod."""
        networks = inspect(self.name)["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in it, as its own user."""
        return docker("exec", self.name, *cmd, check=check)

    def logs(self) -> str:
        """What it printed."""
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait_exit(self, timeout: float = 30) -> int:
        """Its exit code, once it has exited."""

        def exited() -> dict[str, Any] | None:
            state: dict[str, Any] = inspect(self.name)["State"]
            return None if state["Running"] else state

        state = wait_for(exited, f"{self.name} to exit", timeout, detail=self.logs)
        return int(state["ExitCode"])


@contextmanager
def container(*args: str) -> Iterator[Container]:
    """`docker run -d ARGS`; removed afterwards, whatever happened."""
    name = f"paddock-test-{uuid.uuid4().hex[:10]}"
    docker("run", "-d", "--name", name, *args)
    try:
        yield Container(name)
    finally:
        docker("rm", "-f", "-v", name, check=False)


UIDS = {
    "operator": 10001,
    "gateway": 10002,
    "vault": 1337,
    "harness": 1000,
    "llama-server": 1001,
    "redis": 999,
}
COMMANDS = {"operator": "operator", "gateway": "gateway", "vault": "vault", "harness": "runner"}
"""The paddock command each Python image runs when the Pod or `docker run` gives no arguments."""


@pytest.mark.parametrize("name", UIDS)
def test_each_image_runs_as_its_own_non_root_user(images: Images, name: str) -> None:
    uid = UIDS[name]
    # Numeric, so the kubelet can check runAsNonRoot against the image itself.
    assert inspect(images[name])["Config"]["User"] == f"{uid}:{uid}"
    ids = docker("run", "--rm", "--entrypoint", "id", images[name]).stdout
    assert ids.startswith(f"uid={uid}(")
    assert f" gid={uid}(" in ids


@pytest.mark.parametrize("name", COMMANDS)
def test_python_images_run_paddock(images: Images, name: str) -> None:
    config = inspect(images[name])["Config"]
    assert (config["Entrypoint"], config["Cmd"]) == (["paddock"], [COMMANDS[name]])
    usage = docker("run", "--rm", images[name], "--help").stdout
    assert f"    {COMMANDS[name]} " in usage  # the subcommand list


def test_images_are_pinned_to_the_charts_version_and_labelled(images: Images) -> None:
    for name in UIDS:
        labels = inspect(images[name])["Config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == VERSION
        assert labels["org.opencontainers.image.base.name"] == "paddock/debian:bookworm"
        commit = labels["org.opencontainers.image.revision"].removesuffix("-dirty")
        known = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], check=False
        )
        assert known.returncode == 0, f"{name}: revision {commit} is no commit of this repository"


def test_a_second_build_rebuilds_nothing(images: Images) -> None:
    # Every image build.sh makes: the non-root ones, and the CNI node installer (root without
    # capabilities: it writes the node's root-owned CNI directories).
    built = [*UIDS, "cni"]
    before = {name: inspect(images[name])["Id"] for name in built}
    build = build_images()
    assert build.returncode == 0, build.stderr
    assert {name: inspect(images[name])["Id"] for name in built} == before
    assert build.stdout.count("up to date") == len(built), build.stdout + build.stderr


def test_vault_image_runs_the_pods_egress_init(images: Images, tmp_path: Path) -> None:
    """The init container's own command and security context: it writes the trust bundle, and
    afterwards the harness user's connections to anywhere land on the vault's port."""
    init = egress_init_container(OperatorSettings())
    assert init["image"] == images["vault"]
    trust, agent_ca = tmp_path / "trust", tmp_path / "agent-ca"
    trust.mkdir()
    agent_ca.mkdir()
    ca_pem = pki.new_ca("agent").cert_pem.decode()
    (agent_ca / AGENT_CA_FILE).write_text(ca_pem)
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    vault = images["vault"]
    # The Pod's network namespace, held by a container that only sleeps.
    with container("--entrypoint", "sleep", vault, "300") as pod:
        net = f"--network=container:{pod.name}"
        with container(
            net,
            *security_flags(init["securityContext"]),
            "--tmpfs", mounts["xtables-lock"],
            "-v", f"{trust}:{mounts['trust']}",
            "-v", f"{agent_ca}:{AGENT_CA_DIR}:ro",
            "--entrypoint", init["command"][0],
            vault, *init["command"][1:],
        ) as egress_init:  # fmt: skip
            assert egress_init.wait_exit() == 0, egress_init.logs()
            assert "outbound TCP redirected to port 15006" in egress_init.logs()
        bundle = (trust / "ca.crt").read_text()
        assert bundle.endswith(ca_pem)
        assert bundle.count("BEGIN CERTIFICATE") > 100, "the system roots are missing"

        listener = (
            "import socket\n"
            "s = socket.create_server(('127.0.0.1', 15006))\n"
            "c, _ = s.accept()\n"
            "d = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST\n"
            "c.sendall(f'{socket.inet_ntoa(d[4:8])}:{int.from_bytes(d[2:4], \"big\")}'.encode())\n"
        )
        client = (
            "import socket\n"
            "print(socket.create_connection(('203.0.113.7', 443), timeout=5).recv(100).decode())"
        )
        with container(net, "--user", "1337", "--entrypoint", "python3", vault, "-c", listener):
            # Retried until the listener is up: before that the redirect is refused.
            for _ in range(50):
                reached = docker(
                    "run", "--rm", net, "--user", "1000", "--entrypoint", "python3", vault,
                    "-c", client, check=False,
                )  # fmt: skip
                if reached.returncode == 0:
                    break
        assert reached.stdout.strip() == "203.0.113.7:443", reached.stderr


def test_llama_server_serves_a_tiny_model_as_the_pod_runs_it(
    images: Images, tmp_path: Path
) -> None:
    spec = AgentSpec.model_validate(minimal_agent("coder")["spec"])
    parts = model_server(spec.model, OperatorSettings())
    assert parts is not None
    server = parts.container
    assert server["image"] == images["llama-server"]
    # `docker run` with no arguments gives the same server.
    config = inspect(images["llama-server"])["Config"]
    assert config["Entrypoint"] + config["Cmd"] == server["command"] + server["args"]
    (model,) = spec.model.models
    weights = write_tiny_llama(tmp_path / "tiny.gguf", seed=0)
    mounts = []
    for mount in server["volumeMounts"]:
        if "subPath" in mount:  # the model from its PVC
            mounts += ["-v", f"{weights}:{mount['mountPath']}:ro"]
        else:  # emptyDirs
            mounts += ["--mount", f"type=tmpfs,destination={mount['mountPath']},tmpfs-mode=1777"]
    env = [f"--env={e['name']}={e['value']}" for e in server["env"]]
    with container(
        *security_flags(server["securityContext"]), *mounts, *env,
        "--entrypoint", server["command"][0], images["llama-server"], *server["args"],
    ) as llama:  # fmt: skip
        url = f"http://{llama.ip}:{sandbox.MODEL_PORT}"
        wait_http(f"{url}/health", timeout=30)
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": model.name, "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 4},
            timeout=60,
        )  # fmt: skip
        assert chat.status_code == 200, llama.logs()[-2000:]
        assert chat.json()["usage"]["completion_tokens"] == 4


AVX512 = r"%zmm[0-9]|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\{%k[0-7]\}"
"""What only AVX-512 code uses: zmm registers, the upper 16 xmm/ymm registers, opmask registers."""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction sets")
def test_llama_server_runs_on_cpus_without_avx512(images: Images, tmp_path: Path) -> None:
    """The model server is built for x86-64-v3 (AVX2), not for the CPU of the machine that built
    it: a node without AVX-512 would stop it with an illegal instruction."""
    assert shutil.which("objdump"), "objdump (binutils) reads the binary's instructions"
    spec = AgentSpec.model_validate(minimal_agent("coder")["spec"])
    parts = model_server(spec.model, OperatorSettings())
    assert parts is not None
    server = parts.container
    found = docker(
        "run", "--rm", "--entrypoint", "sh", images["llama-server"],
        "-c", f"command -v {server['command'][0]}",
    ).stdout.strip()  # fmt: skip
    created = docker("create", images["llama-server"]).stdout.strip()
    try:
        docker("cp", f"{created}:{found}", str(tmp_path / "llama-server"))
    finally:
        docker("rm", created)
    avx512: list[str] = []
    fused = 0
    with subprocess.Popen(
        ["objdump", "-d", "--no-show-raw-insn", str(tmp_path / "llama-server")],
        stdout=subprocess.PIPE,
        text=True,
    ) as disassembly:
        assert disassembly.stdout is not None
        for line in disassembly.stdout:
            fused += "vfmadd" in line
            if ("mm" in line or "{%k" in line) and re.search(AVX512, line) and len(avx512) < 3:
                avx512.append(line.strip())
    assert disassembly.returncode == 0
    assert not avx512, f"AVX-512 instructions in llama-server: {avx512}"
    assert fused > 100  # AVX2 and FMA are used: x86-64-v3, not a slower baseline


@pytest.fixture
def https_repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A git repository served over HTTPS on loopback, and the CA that signed its certificate."""
    repo = tmp_path / "served" / "project.git"
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("hello from https\n")
    subprocess.run([*git, "-C", str(work), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "update-server-info"], check=True)  # dumb HTTP
    ca = pki.new_ca("repo")
    leaf = pki.issue(ca, ["127.0.0.1"])
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem + leaf.key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "leaf.pem")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(repo.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}/project.git", tmp_path / "ca.crt"
    finally:
        server.shutdown()
        server.server_close()


def test_harness_serves_the_runner_and_clones_over_https(
    images: Images, https_repo: tuple[str, Path]
) -> None:
    url, ca = https_repo
    scratch = "/tmp"  # noqa: S108 - the Pod's emptyDir
    with container(
        "--read-only", "--tmpfs", scratch, "--cap-drop=ALL", images["harness"]
    ) as harness:
        wait_http(f"http://{harness.ip}:7000/healthz", timeout=30)
        assert harness.exec("pwd").stdout.strip() == "/workspace"
    # The agent's shell tool runs bash; GIT_SSL_CAINFO is how the Pod points git at its bundle.
    clone = docker(
        "run", "--rm", "--network=host", "-v", f"{ca}:/etc/paddock/ca/ca.crt:ro",
        "-e", "GIT_SSL_CAINFO=/etc/paddock/ca/ca.crt", "--entrypoint", "bash", images["harness"],
        "-c", f"git clone -q {url} /tmp/p && cat /tmp/p/README && curl -fsS --cacert "
        f"/etc/paddock/ca/ca.crt {url}/HEAD",
    ).stdout  # fmt: skip
    assert clone == "hello from https\nref: refs/heads/main\n"


def test_redis_answers_and_keeps_an_append_only_file(images: Images) -> None:
    volume = f"paddock-test-{uuid.uuid4().hex[:10]}"
    docker("volume", "create", volume)
    run = ["--read-only", "--cap-drop=ALL", "-v", f"{volume}:/data", images["redis"]]
    try:
        with container(*run) as redis:
            for _ in range(50):
                if redis.exec("redis-cli", "ping", check=False).stdout.strip() == "PONG":
                    break
            assert redis.exec("redis-cli", "set", "session", "kept").stdout.strip() == "OK"
            aof = redis.exec("sh", "-c", "cat /data/appendonlydir/*.incr.aof").stdout
            assert "kept" in aof
        with container(*run) as again:
            for _ in range(50):
                got = again.exec("redis-cli", "get", "session", check=False).stdout.strip()
                if got and "LOADING" not in got and "refused" not in got:
                    break
            assert got == "kept"
    finally:
        docker("volume", "rm", "-f", volume, check=False)
