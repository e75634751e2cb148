"""A real etcd + kube-apiserver on loopback, for tests and benchmarks (no kubelet, no scheduler).

RBAC and the default admission plugins are on, TLS is real (a CA made per server), and clients
authenticate with a static bearer token in system:masters. Service-account tokens can be minted
(TokenRequest) and reviewed (TokenReview), so access control can be tested for real. A
kube-controller-manager runs the garbage collector (owner references cascade as in a cluster), the
namespace controller, the service-account controller (each namespace gets its `default`) and the
claim-protection controller (a deleted PersistentVolumeClaim goes once no Pod uses it).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from paddock import pki
from paddock_testing.proc import free_port, stop
from paddock_testing.wait import wait_for


class ApiServerError(RuntimeError):
    """The API server or etcd did not start or stop as expected."""


@dataclass(frozen=True)
class KubeBinaries:
    """Paths to the binaries hack/kube-binaries.sh builds."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    ENV = (
        "PADDOCK_ETCD",
        "PADDOCK_KUBE_APISERVER",
        "PADDOCK_KUBE_CONTROLLER_MANAGER",
        "PADDOCK_KUBECTL",
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Self:
        """Read the paths from the PADDOCK_* variables hack/kube-binaries.sh prints."""
        env = dict(os.environ) if env is None else env
        missing = [name for name in cls.ENV if not env.get(name)]
        if missing:
            raise ApiServerError(
                f'{", ".join(missing)} not set: run `eval "$(hack/kube-binaries.sh)"` first'
            )
        paths = [Path(env[name]) for name in cls.ENV]
        for name, path in zip(cls.ENV, paths, strict=True):
            if not os.access(path, os.X_OK):
                raise ApiServerError(f"{name}={path} is not an executable file")
        return cls(*paths)


class ApiServer:
    """etcd and kube-apiserver as child processes, with a kubeconfig to reach them."""

    def __init__(self, binaries: KubeBinaries, workdir: Path, crds: Sequence[Path] = ()) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.crds = list(crds)
        self.token = os.urandom(16).hex()
        self.port = free_port()
        self._processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    @property
    def url(self) -> str:
        """The API server's https URL."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's serving certificate."""
        return self.workdir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for the admin user (system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def admin_headers(self) -> dict[str, str]:
        """The admin user's (system:masters) bearer token, as request headers."""
        return {"Authorization": f"Bearer {self.token}"}

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the API server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        """Start etcd, then the API server; return once /readyz answers ok."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        etcd_url = self._start_etcd()
        self._write_pki()
        self._spawn(
            "kube-apiserver", [str(self.binaries.kube_apiserver), *self._apiserver_args(etcd_url)]
        )
        self._wait_ready(timeout)
        self._write_kubeconfig()
        # Before the controller-manager starts, so its garbage collector maps these kinds.
        for crd in self.crds:
            self.kubectl("apply", "--server-side", "-f", str(crd))
        if self.crds:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=garbage-collector-controller,namespace-controller,"
                "serviceaccount-controller,persistentvolumeclaim-protection-controller",
                "--leader-elect=false",
                "--secure-port=0",
            ],
        )

    def stop(self) -> None:
        """Stop the API server, then etcd."""
        for _, process, log in reversed(self._processes):
            stop(process)
            log.close()
        self._processes.clear()

    def pid(self, name: str) -> int:
        """The process id of etcd, kube-apiserver or kube-controller-manager."""
        return next(p.pid for n, p, _ in self._processes if n == name)

    def check_alive(self) -> None:
        """Raise ApiServerError, with the end of its log, if a process has exited."""
        for name, process, _ in self._processes:
            if process.poll() is not None:
                tail = self._log_tail(name)
                raise ApiServerError(f"{name} exited with {process.returncode}:\n{tail}")

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this server."""
        result = subprocess.run(  # noqa: S603 - our own kubectl, argv built here
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ApiServerError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    # --- internals ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own binaries, argv built here
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._processes.append((name, process, log))
        return process

    def _log_tail(self, name: str, lines: int = 25) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",  # test data: durability is not what is under test
                "--log-level=warn",
            ],
        )
        self._wait_http(f"{client_url}/health", "etcd", timeout=30)
        return client_url

    def _write_pki(self) -> None:
        ca = pki.new_ca("paddock-test-apiserver-ca")
        serving = pki.issue(ca, ["127.0.0.1", "localhost", "kubernetes.default.svc"])
        sa_key = pki.new_key()
        files = {
            "ca.crt": ca.cert_pem,
            "ca.key": ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "sa.key": pki.key_pem(sa_key),
            "sa.pub": pki.public_key_pem(sa_key),
            "tokens.csv": f'{self.token},admin,admin,"system:masters"\n'.encode(),
        }
        for name, content in files.items():
            path = self.workdir / name
            path.write_bytes(content)
            path.chmod(0o600)

    def _apiserver_args(self, etcd_url: str) -> list[str]:
        w = self.workdir
        return [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={w / 'apiserver.crt'}",
            f"--tls-private-key-file={w / 'apiserver.key'}",
            f"--client-ca-file={w / 'ca.crt'}",
            f"--token-auth-file={w / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            f"--cert-dir={w / 'certs'}",
        ]

    def _wait_http(self, url: str, name: str, timeout: float) -> None:
        context = self.ssl_context() if url.startswith("https") else None

        def ready() -> bool:
            self.check_alive()
            # S310: the URL is one this class built, http(s) to 127.0.0.1.
            request = urllib.request.Request(url, headers=self.admin_headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as answer:  # noqa: S310
                    return bool(answer.status == 200)
            except urllib.error.HTTPError as error:
                # Not ready yet (a 500 while starting): close its connection now, not at GC,
                # where it was an unraisable ResourceWarning in whichever test ran then.
                error.close()
                return False

        wait_for(
            ready,
            f"{name} to be ready",
            timeout,
            every=0.25,
            tolerate=(urllib.error.URLError, OSError),
            detail=lambda: self._log_tail(name),
            error=ApiServerError,
        )

    def _wait_ready(self, timeout: float) -> None:
        self._wait_http(f"{self.url}/readyz", "kube-apiserver", timeout)

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: paddock-test
  cluster:
    server: {self.url}
    certificate-authority: {self.ca_file}
users:
- name: admin
  user:
    token: {self.token}
contexts:
- name: paddock-test
  context: {{cluster: paddock-test, user: admin, namespace: default}}
current-context: paddock-test
""",
            encoding="utf-8",
        )
        self.kubeconfig.chmod(0o600)
