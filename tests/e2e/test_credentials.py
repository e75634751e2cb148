"""Tier 4, must-show 3: credentials for real, on the kind cluster.

An in-cluster HTTPS service with a CA of its own plays "the API" (an internal GitHub Enterprise,
say). As a cluster admin would, the test opens it to the sandboxes: the chart's values
`operator.sandboxInternalNetworks` (the Services' ClusterIPs) and
`operator.sandboxUpstreamCABundle` (the service's CA) on the release `paddock`, and a
NetworkPolicy that lets the sandboxes reach its Pods. It leaves the values set: other tests do not
depend on them, and a rerun with them in place changes nothing. Setting them replaces every
sandbox Pod, the example Agent's too; the test waits for that one to be Ready again.

The Agent holds stubs only. Through its vault, the stub becomes the real key towards the API's host
and nowhere else; a connection that ignores the proxy never reaches the API at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from paddock import pki
from paddock_testing.kind import (
    EXAMPLE_AGENT,
    EXAMPLE_NAMESPACE,
    REPO,
    SYSTEM_NAMESPACE,
    Kind,
    plain_pod,
    wait_until,
)

pytestmark = pytest.mark.cluster

API_NAMESPACE = "e2e-internal-api"
"""Where the internal services live; kept between runs (its CA too), so a rerun changes nothing."""
SERVICE_IPS = {
    "api": "10.96.0.200",
    "other": "10.96.0.201",
    "open": "10.96.0.202",
    "unlisted": "10.96.0.203",
}
"""Fixed ClusterIPs, in the band Kubernetes keeps for static addresses: only these are opened."""
INTERNAL_NETWORK = "10.96.0.200/30"
HARNESS_IMAGE = "paddock/harness:0.1.0"
SERVER_LABELS = {"app.kubernetes.io/name": "e2e-internal-api"}
CA_IN_HARNESS = "/tmp/internal-ca.pem"  # noqa: S108 - a file in the harness container

# The internal service: HTTPS on 8443, one JSON line per request on stdout (what it received,
# the Authorization header included), and an answer that proves which header arrived without
# repeating it (the vault scrubs real values from responses).
SERVER = r"""
import hashlib, http.server, json, socketserver, ssl, sys

NAME = sys.argv[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorization = self.headers.get("Authorization", "")
        seen = {"server": NAME, "host": self.headers.get("Host"), "path": self.path,
                "authorization": authorization}
        print(json.dumps(seen), flush=True)
        digest = hashlib.sha256(authorization.encode()).hexdigest()
        body = json.dumps({"server": NAME, "host": seen["host"], "path": self.path,
                           "authorization_sha256": digest})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, address):  # probes connect without TLS
        pass


def datagrams():  # UDP on the same port: one JSON line per datagram received
    import socket
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("", 8443))
    while True:
        data, _ = udp.recvfrom(2048)
        print(json.dumps({"server": NAME, "udp": data.decode(errors="replace")}), flush=True)


import threading
threading.Thread(target=datagrams, daemon=True).start()
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server = Server(("", 8443), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
server.serve_forever()
"""


def host(service: str) -> str:
    return f"{service}.{API_NAMESPACE}.svc.cluster.local"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the internal services, as their owners would run them ----------------------------------------


def internal_ca(kind: Kind) -> pki.KeyPair:
    """The internal services' CA, made once and kept in their namespace."""
    found = kind.get("secret", "internal-ca", API_NAMESPACE)
    if found:
        data = found["data"]
        return pki.KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
    ca = pki.new_ca("paddock e2e internal CA")
    kind.apply(tls_secret("internal-ca", ca), namespace=API_NAMESPACE)
    return ca


def tls_secret(name: str, pair: pki.KeyPair) -> dict[str, Any]:
    """A kubernetes.io/tls Secret holding a certificate and its key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": pair.cert_pem.decode(), "tls.key": pair.key_pem.decode()},
    }


def server_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {**SERVER_LABELS, "e2e/server": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "server",
                    "image": HARNESS_IMAGE,
                    "command": ["python3", "/server/server.py", name],
                    "ports": [{"name": "https", "containerPort": 8443}],
                    "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "server", "mountPath": "/server"},
                        {"name": "tls", "mountPath": "/tls"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": [
                {"name": "server", "configMap": {"name": "internal-server"}},
                {"name": "tls", "secret": {"secretName": "internal-tls"}},
            ],
        },
    }


def service(name: str, pod: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "clusterIP": SERVICE_IPS[name],
            "selector": {"e2e/server": pod},
            "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
        },
    }


@dataclass(frozen=True)
class Internal:
    """The internal services: `api` on one Pod; `other`, `open` and `unlisted` on another."""

    ca: pki.KeyPair
    api_pod_ip: str

    def logged(self, kind: Kind, pod: str) -> list[dict[str, str]]:
        out = kind.kubectl("logs", pod, namespace=API_NAMESPACE).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def received(self, kind: Kind, pod: str) -> list[dict[str, str]]:
        """Every HTTPS request the server Pod has logged, oldest first."""
        return [r for r in self.logged(kind, pod) if "udp" not in r]

    def datagrams(self, kind: Kind, pod: str) -> list[str]:
        """Every UDP datagram the server Pod has received, oldest first."""
        return [r["udp"] for r in self.logged(kind, pod) if "udp" in r]


@pytest.fixture(scope="module")
def internal(kind: Kind) -> Internal:
    """The internal HTTPS services, fresh Pods each run, on fixed ClusterIPs."""
    if kind.get("namespace", API_NAMESPACE) is None:
        kind.kubectl("create", "namespace", API_NAMESPACE)
    ca = internal_ca(kind)
    tls = tls_secret("internal-tls", pki.issue(ca, [host(s) for s in SERVICE_IPS]))
    script = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "internal-server"},
        "data": {"server.py": SERVER},
    }
    kind.kubectl("delete", "pod", "api", "elsewhere", "--ignore-not-found", namespace=API_NAMESPACE)
    kind.apply(
        tls, script, server_pod("api"), server_pod("elsewhere"),
        service("api", "api"), *(service(s, "elsewhere") for s in ("other", "open", "unlisted")),
        namespace=API_NAMESPACE,
    )  # fmt: skip
    kind.kubectl(
        "wait", "pod", "api", "elsewhere", "--for=condition=Ready", "--timeout=120s",
        namespace=API_NAMESPACE,
    )  # fmt: skip
    api = kind.get("pod", "api", API_NAMESPACE)
    assert api is not None
    return Internal(ca, api["status"]["podIP"])


# --- what the cluster admin does ------------------------------------------------------------------


@pytest.fixture(scope="module")
def opened(kind: Kind, internal: Internal, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The release opens INTERNAL_NETWORK and trusts the internal CA (an upgrade only if needed)."""
    bundle = internal.ca.cert_pem.decode()
    values = json.loads(
        kind.helm("get", "values", "paddock", "-n", SYSTEM_NAMESPACE, "-o", "json").stdout
    )
    operator = (values or {}).get("operator") or {}
    if (
        operator.get("sandboxInternalNetworks") == [INTERNAL_NETWORK]
        and operator.get("sandboxUpstreamCABundle") == bundle
    ):
        return
    example = {p["metadata"]["uid"] for p in kind.sandbox_pods(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)}
    ca_file = tmp_path_factory.mktemp("internal-ca") / "ca.pem"
    ca_file.write_text(bundle)
    kind.helm(
        "upgrade", "paddock", str(REPO / "charts" / "paddock"), "-n", SYSTEM_NAMESPACE,
        "--reuse-values", "--set", f"operator.sandboxInternalNetworks={{{INTERNAL_NETWORK}}}",
        "--set-file", f"operator.sandboxUpstreamCABundle={ca_file}", "--wait", "--timeout=5m",
    )  # fmt: skip
    kind.kubectl(
        "rollout", "status", "deployment/paddock-operator", "--timeout=180s",
        namespace=SYSTEM_NAMESPACE,
    )  # fmt: skip
    if example:
        # Every sandbox Pod is replaced to take the new settings: leave the example Agent Ready.
        wait_until(lambda: replaced_and_ready(kind, example), "the example Agent Ready again", 300)


def replaced_and_ready(kind: Kind, old: set[str]) -> bool:
    """Whether the example Agent runs one sandbox Pod, not one of `old`, with every container
    ready, and says it is Ready."""
    pods = [
        p
        for p in kind.sandbox_pods(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)
        if not p["metadata"].get("deletionTimestamp")
    ]
    if len(pods) != 1 or pods[0]["metadata"]["uid"] in old:
        return False
    statuses = pods[0]["status"].get("containerStatuses") or [{"ready": False}]
    return all(s["ready"] for s in statuses) and bool(
        kind.agent_ready(EXAMPLE_NAMESPACE, EXAMPLE_AGENT)
    )


def sandboxes_may_reach_the_internal_pods(namespace: str) -> dict[str, Any]:
    """Policies see Pod addresses after a Service's DNAT: the admin lets the sandboxes reach the
    internal Pods themselves (the operator's policy for each sandbox stays as it is)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "sandboxes-to-internal-api", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "paddock-agent"}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": API_NAMESPACE}
                            },
                            "podSelector": {"matchLabels": SERVER_LABELS},
                        }
                    ],
                    # UDP too: only the sandbox's own egress rules then stand in its way.
                    "ports": [{"protocol": p, "port": 8443} for p in ("TCP", "UDP")],
                }
            ],
        },
    }


# --- the Agent ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """The Agent's running sandbox, and the real values only the vault may hold."""

    kind: Kind
    namespace: str
    pod: str
    real: dict[str, str]
    stubs: dict[str, str]

    def harness(self, script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`sh -c script` in the harness container, as the agent would run it."""
        interactive = ["-i"] if stdin is not None else []
        return self.kind.kubectl(
            "exec", *interactive, self.pod, "-c", "harness", "--", "sh", "-c", script,
            namespace=self.namespace, input=stdin, check=False,
        )  # fmt: skip

    def curl(self, url: str, *options: str) -> tuple[int, str, str]:
        """(curl's exit code, the HTTP status and body, stderr) of a request from the harness."""
        quoted = " ".join(f"'{o}'" if "$" not in o else f'"{o}"' for o in options)
        done = self.harness(f"curl -sS --max-time 20 -w '\\n%{{http_code}}' {quoted} '{url}'")
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def sandbox(kind: Kind, internal: Internal, opened: None) -> Iterator[Sandbox]:
    """An Agent with a key for `api` and one for `other`, allowed to reach `open`, and Ready."""
    namespace = f"e2e-cred-{uuid.uuid4().hex[:8]}"
    kind.kubectl("create", "namespace", namespace)
    # Sandboxes hold no privilege (CNI mode, the default): the namespace enforces `restricted`.
    kind.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    real = {
        "API_KEY": f"sk_real_api_{uuid.uuid4().hex}",
        "OTHER_KEY": f"sk_real_other_{uuid.uuid4().hex}",
    }
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name.lower().replace("_", "-")},
            "stringData": {"key": value},
        }
        for name, value in real.items()
    ]
    agent = {
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "caller"},
        "spec": {
            "harness": {"image": HARNESS_IMAGE},
            "model": {
                "engine": "external",
                "models": [{"name": "internal"}],
                "default": "internal",
                "external": {"baseURL": f"https://{host('api')}/v1", "credential": "API_KEY"},
            },
            "credentials": [
                {
                    "name": "API_KEY",
                    "secretRef": {"name": "api-key", "key": "key"},
                    "hosts": [host("api")],
                },
                {
                    "name": "OTHER_KEY",
                    "secretRef": {"name": "other-key", "key": "key"},
                    "hosts": [host("other")],
                },
            ],
            "egress": {"allow": [host("open")]},
            "workspace": {"size": "100Mi"},
        },
    }
    kind.apply(
        *secrets, sandboxes_may_reach_the_internal_pods(namespace), agent, namespace=namespace
    )
    try:
        wait_until(lambda: kind.agent_ready(namespace, "caller"), "Agent caller Ready", 300)
        (pod,) = kind.sandbox_pods(namespace, "caller")
        harness = next(c for c in pod["spec"]["containers"] if c["name"] == "harness")
        env = {e["name"]: e.get("value", "") for e in harness["env"]}
        found = Sandbox(kind, namespace, pod["metadata"]["name"], real, {k: env[k] for k in real})
        found.harness(f"cat > {CA_IN_HARNESS}", stdin=internal.ca.cert_pem.decode())
        yield found
    finally:
        kind.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def marker(what: str) -> str:
    return f"/{what}-{uuid.uuid4().hex[:8]}"


# --- the must-show --------------------------------------------------------------------------------


def test_the_api_receives_the_real_key_for_the_stub_the_agent_sent(
    kind: Kind, internal: Internal, sandbox: Sandbox
) -> None:
    def answered() -> tuple[str, dict[str, Any]] | None:
        # Through HTTPS_PROXY (the vault), as any tool in the harness would; the policies that
        # open the way may take a moment to be enforced.
        path = marker("explicit")
        code, out, _ = sandbox.curl(
            f"https://{host('api')}{path}", "-H", "Authorization: Bearer $API_KEY"
        )
        body, _, status = out.rpartition("\n")
        return (path, json.loads(body)) if code == 0 and status == "200" else None

    path, answer = wait_until(answered, "the internal API to answer through the vault", 90)
    assert answer["server"] == "api"
    assert answer["authorization_sha256"] == sha256(f"Bearer {sandbox.real['API_KEY']}")
    (seen,) = [r for r in internal.received(kind, "api") if r["path"] == path]
    assert seen["authorization"] == f"Bearer {sandbox.real['API_KEY']}"
    assert seen["host"] == host("api")


def test_the_harness_holds_only_stubs(sandbox: Sandbox) -> None:
    for name, stub in sandbox.stubs.items():
        assert stub.startswith(f"stub_{name.lower()}_"), stub
        assert stub != sandbox.real[name]
    env = sandbox.harness("env")
    assert env.returncode == 0, env.stderr
    assert f"API_KEY={sandbox.stubs['API_KEY']}" in env.stdout.splitlines()
    for value in sandbox.real.values():
        assert value not in env.stdout
    # Every file the harness can read, mounts included; the values come in on stdin, so they are in
    # no command line or environment of the container.
    search = sandbox.harness(
        "grep -rlF -f - / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; "
        "echo searched",
        stdin="\n".join(sandbox.real.values()) + "\n",
    )
    assert search.stdout.splitlines() == ["searched"], search.stdout


def test_the_stub_sent_to_another_host_never_becomes_the_key(
    kind: Kind, internal: Internal, sandbox: Sandbox
) -> None:
    stub = f"Bearer {sandbox.stubs['API_KEY']}"
    auth = ("-H", "Authorization: Bearer $API_KEY")
    # `other` holds another credential: the vault decrypts there, finds API_KEY's stub, refuses.
    to_other = marker("stub-to-other")
    code, out, _ = sandbox.curl(f"https://{host('other')}{to_other}", *auth)
    body, _, status = out.rpartition("\n")
    assert (code, status) == (0, "403"), out
    assert "credential API_KEY may not be sent" in body
    assert sandbox.real["API_KEY"] not in body
    # ...while the key that belongs there does get through, so the refusal was about the stub.
    control = marker("other-key-to-other")
    code, out, _ = sandbox.curl(
        f"https://{host('other')}{control}", "-H", "Authorization: Bearer $OTHER_KEY"
    )
    assert (code, out.rpartition("\n")[2]) == (0, "200"), out
    # `open` is only allowed: the vault tunnels TLS it cannot read, so the stub arrives as a stub
    # (the harness checks that server's certificate itself, hence the internal CA).
    to_open = marker("stub-to-open")
    code, out, _ = sandbox.curl(
        f"https://{host('open')}{to_open}", "--cacert", CA_IN_HARNESS, *auth
    )
    assert (code, out.rpartition("\n")[2]) == (0, "200"), out
    # `unlisted` is neither: the vault refuses the tunnel itself.
    to_unlisted = marker("stub-to-unlisted")
    code, _, err = sandbox.curl(f"https://{host('unlisted')}{to_unlisted}", *auth)
    assert code != 0
    assert "403" in err, err

    received = {r["path"]: r for r in internal.received(kind, "elsewhere")}
    assert to_other not in received
    assert to_unlisted not in received
    assert received[to_open]["authorization"] == stub
    assert received[control]["authorization"] == f"Bearer {sandbox.real['OTHER_KEY']}"
    assert not any(sandbox.real["API_KEY"] in r["authorization"] for r in received.values())
    audit = kind.kubectl("logs", sandbox.pod, "-c", "vault", namespace=sandbox.namespace).stdout
    blocked = [line for line in audit.splitlines() if to_other in line]
    assert blocked
    assert '"reason": "credential_blocked"' in blocked[0], blocked


def test_a_connection_that_ignores_the_proxy_does_not_get_out(
    kind: Kind, internal: Internal, sandbox: Sandbox
) -> None:
    paths = {what: marker(f"direct-{what}") for what in ("pod", "service", "name")}
    attempts = {
        # The API's own Pod address and port, certificate checks off.
        "pod": (f"https://{internal.api_pod_ip}:8443{paths['pod']}", "-k"),
        # Its Service address: no name to check the certificate against, so off too.
        "service": (f"https://{SERVICE_IPS['api']}{paths['service']}", "-k"),
        # By name, trusting only the API's real CA: whoever answers must prove it is the API.
        "name": (f"https://{host('api')}{paths['name']}", "--cacert", CA_IN_HARNESS),
    }
    for what, (url, *options) in attempts.items():
        code, out, err = sandbox.curl(
            url, "--noproxy", "*", *options, "-H", "Authorization: Bearer $API_KEY"
        )
        if what == "name":  # 60: the certificate did not verify; the vault, not the API, answered
            assert code == 60, err
        elif code == 0:
            # With certificate checks off, curl reads the vault's own refusal: redirected to the
            # vault, which answers 403 itself and connects nowhere.
            assert out.startswith("paddock vault:"), f"{what}: got out ({out!r})"
            assert out.endswith("403"), f"{what}: {out!r}"
    received = internal.received(kind, "api")
    assert not {r["path"] for r in received} & set(paths.values())
    carrying = [r for r in received if sandbox.real["API_KEY"] in r["authorization"]]
    assert carrying
    assert all(r["path"].startswith("/explicit-") for r in carrying), carrying


SEND_DATAGRAM = (
    "import socket, sys; "
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "[s.sendto(sys.argv[1].encode(), (sys.argv[2], 8443)) for _ in range(3)]"
)


def test_udp_other_than_dns_does_not_get_out(
    kind: Kind, internal: Internal, sandbox: Sandbox
) -> None:
    # A Pod beside the sandbox, with the sandbox's labels (so the same NetworkPolicies) but no
    # egress rules of its own: its datagrams arrive, so the network itself lets UDP through.
    control = marker("udp-control").strip("/")
    command = ["python3", "-c", SEND_DATAGRAM, control, internal.api_pod_ip]
    labels = {"app.kubernetes.io/name": "paddock-agent"}
    pod = plain_pod("udp-control", command, labels)
    kind.apply(pod, namespace=sandbox.namespace)
    wait_until(
        lambda: control in internal.datagrams(kind, "api") or None,
        "the control Pod's datagram to arrive",
        90,
    )
    # The harness sends the same way, straight to the API's Pod: the sandbox's rules reject it.
    attempt = marker("udp-from-sandbox").strip("/")
    script = f"python3 -c '{SEND_DATAGRAM}' {attempt} {internal.api_pod_ip}; echo sent"
    done = sandbox.harness(script)
    assert done.stdout.strip().endswith("sent"), done.stderr
    # DNS still answers (names resolve through the Pod's nameserver)...
    resolved = sandbox.harness(f"getent hosts {host('api')}")
    assert SERVICE_IPS["api"] in resolved.stdout, resolved.stderr
    # ...and a second control datagram, sent after the sandbox's, arrives while its never does.
    later = marker("udp-control-later").strip("/")
    kind.kubectl("delete", "pod", "udp-control", namespace=sandbox.namespace)
    pod["spec"]["containers"][0]["command"][-2] = later
    kind.apply(pod, namespace=sandbox.namespace)
    wait_until(lambda: later in internal.datagrams(kind, "api") or None, "the later datagram", 90)
    assert attempt not in internal.datagrams(kind, "api")
