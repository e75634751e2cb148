"""The Agent resource, paddock.dev/v1alpha1: the one definition the CRD is generated from.

Field docstrings are what `kubectl explain agent.spec...` prints. Constraints that involve one field
are pydantic constraints (checked in Python too); those that relate fields are CEL rules, checked by
the API server at apply time.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field

from paddock.api.schema import Model, Quantity, empty, list_map, matching, rule, validations

GROUP = "paddock.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "paddock.dev/v1alpha1"
KIND: Final = "Agent"
PLURAL = "agents"
SINGULAR = "agent"
SHORT_NAMES = ("ag",)

# Agent names end up in Pod, Service, PVC and Secret names, with suffixes of up to 11 characters.
NAME_MAX = 52

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOST_PATTERN = rf"^(\*\.({_LABEL}\.)+{_LABEL}|({_LABEL}\.)*{_LABEL})$"
HostPattern = Annotated[
    str,
    matching(
        HOST_PATTERN,
        "must be a lowercase host name such as api.github.com, or a wildcard such as "
        "*.github.com; no scheme, port, path, or bare '*'",
        max_length=253,
    ),
]

EnvName = Annotated[
    str,
    matching(
        r"^[A-Za-z_][A-Za-z0-9_]*$",
        "must be an environment variable name: letters, digits and '_', not starting with a digit",
        max_length=128,
    ),
]

# Variables paddock sets in the harness container itself; neither env nor a credential may set them.
RESERVED_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "OPENAI_BASE_URL",
    "PADDOCK_MODEL_URL",
)
_RESERVED_CEL = "[" + ", ".join(f"'{name}'" for name in RESERVED_ENV) + "]"


_NOT_RESERVED = rule(
    f"!(self.name in {_RESERVED_CEL})",
    "must not be one of the variables paddock sets itself: " + ", ".join(RESERVED_ENV),
    field_path=".name",
)


DnsSubdomain = Annotated[
    str,
    matching(
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "must be a lowercase DNS subdomain (the name of a Kubernetes object)",
        max_length=253,
    ),
]
ModelName = Annotated[
    str,
    matching(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'",
        max_length=128,
    ),
]
HttpsUrl = Annotated[
    str,
    Field(max_length=2048, min_length=1),
    Field(
        json_schema_extra=validations(
            rule(
                "isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",
                "must be an absolute https:// URL",
            )
        )
    ),
]
RelativePath = Annotated[
    str,
    matching(
        r"^[^/].*$",
        "must be a relative path",
        max_length=1024,
    ),
    Field(
        min_length=1,
        json_schema_extra=validations(
            rule("!self.split('/').exists(p, p == '..')", "must not contain '..'")
        ),
    ),
]
AbsolutePath = Annotated[
    str,
    matching(r"^/.*$", "must be an absolute path", max_length=1024),
]
Arg = Annotated[str, Field(max_length=4096)]


# --- harness -----------------------------------------------------------------------------------


class EnvVar(Model):
    """An environment variable of the harness container."""

    model_config = Model.model_config | {"json_schema_extra": validations(_NOT_RESERVED)}

    name: EnvName
    """Name of the variable."""
    value: Annotated[str, Field(max_length=32768)] = ""
    """Literal value. Secrets do not go here: declare them in spec.credentials."""


class Resources(Model):
    """Compute resources, as in a container's `resources`."""

    requests: Annotated[dict[str, Quantity], Field(max_length=16)] = empty(dict)
    """Minimum resources the container needs, e.g. {cpu: 500m, memory: 1Gi}."""
    limits: Annotated[dict[str, Quantity], Field(max_length=16)] = empty(dict)
    """Maximum resources the container may use."""


class Harness(Model):
    """The container that runs the agent and paddock's runner."""

    image: Annotated[str, Field(min_length=1, max_length=512)]
    """Container image of the harness (the runner plus the agent it drives)."""
    command: Annotated[list[Arg], Field(max_length=64)] = empty(list)
    """Entrypoint override; empty keeps the image's."""
    args: Annotated[list[Arg], Field(max_length=256)] = empty(list)
    """Arguments to the entrypoint."""
    env: Annotated[
        list[EnvVar],
        Field(
            max_length=64,
            json_schema_extra=list_map("name"),
        ),
    ] = empty(list)
    """Plain environment variables. Names must be unique and must not be a credential's name."""
    resources: Resources = empty(Resources)
    """CPU and memory of the harness container."""
    working_dir: AbsolutePath = "/workspace"
    """Working directory of the agent; the workspace volume is mounted at /workspace."""


# --- model server ------------------------------------------------------------------------------


class PvcSource(Model):
    """A model file or directory on a PersistentVolumeClaim in the Agent's namespace."""

    claim_name: DnsSubdomain
    """Name of the PersistentVolumeClaim holding the model."""
    path: RelativePath
    """Path inside the volume: a GGUF file for llamacpp, a model directory for vllm."""


class HuggingFaceSource(Model):
    """A model on the Hugging Face Hub, for clusters that may download."""

    repo: Annotated[
        str,
        matching(
            r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$",
            "must be a Hugging Face repository such as Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
            max_length=256,
        ),
    ]
    """Repository, as owner/name."""
    file: Annotated[str, Field(max_length=512)] | None = None
    """File in the repository (a GGUF file for llamacpp); vllm loads the whole repository."""
    revision: Annotated[str, Field(min_length=1, max_length=256)] = "main"
    """Branch, tag or commit."""


class ModelSource(Model):
    """Where a model's weights come from. Exactly one of pvc, url, huggingFace."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            rule(
                "[has(self.pvc), has(self.url), has(self.huggingFace)].filter(x, x).size() == 1",
                "must set exactly one of pvc, url, huggingFace",
            )
        )
    }

    pvc: PvcSource | None = None
    """A path on a PersistentVolumeClaim (works with no network access)."""
    url: HttpsUrl | None = None
    """An https URL of a GGUF file, downloaded into the workspace at start-up."""
    hugging_face: HuggingFaceSource | None = None
    """A Hugging Face Hub reference."""


class ServedModel(Model):
    """A model the Agent's model server offers, by name."""

    name: ModelName
    """Name clients ask for (the `model` field of OpenAI-compatible requests)."""
    source: ModelSource | None = None
    """Where the weights come from; required for llamacpp and vllm, absent for external."""


class External(Model):
    """An OpenAI-compatible endpoint outside the Pod, reached through the vault sidecar."""

    base_url: HttpsUrl = Field(alias="baseURL")
    """Base URL of the API, e.g. https://api.example.com/v1."""
    credential: EnvName
    """Name of the spec.credentials entry whose value is the API key."""


_RESERVED_ARGS = ("--host", "--port", "--models-dir", "--api-key")


class ModelSpec(Model):
    """The model server next to the agent."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            rule(
                "self.models.exists(m, m.name == self.default)",
                "spec.model.default must be the name of one of spec.model.models",
                field_path=".default",
            ),
            rule(
                "self.engine != 'external' || has(self.external)",
                "spec.model.external (baseURL and credential) is required when engine is external",
                reason="FieldValueRequired",
            ),
            rule(
                "self.engine == 'external' || !has(self.external)",
                "spec.model.external is only allowed when engine is external",
                field_path=".external",
            ),
            rule(
                "self.engine == 'external' || self.models.all(m, has(m.source))",
                "every entry of spec.model.models needs a source when engine is llamacpp or vllm",
                field_path=".models",
            ),
            rule(
                "self.engine != 'external' || self.models.all(m, !has(m.source))",
                "models of an external engine are served elsewhere and take no source",
                field_path=".models",
            ),
            rule(
                "self.engine != 'vllm' || size(self.models) == 1",
                "vllm serves exactly one model per Agent",
                field_path=".models",
            ),
            rule(
                "self.engine != 'vllm' || !has(self.gpus) || self.gpus >= 1",
                "vllm needs at least one GPU",
                field_path=".gpus",
            ),
            rule(
                "self.engine != 'external' || "
                "(!has(self.gpus) && size(self.args) == 0 && !has(self.image))",
                "gpus, args and image do not apply to an external engine",
            ),
            rule(
                "!self.args.exists(a, "
                + " || ".join(f"a == '{f}' || a.startsWith('{f}=')" for f in _RESERVED_ARGS)
                + ")",
                "spec.model.args must not set "
                + ", ".join(_RESERVED_ARGS)
                + ": paddock manages them",
                field_path=".args",
            ),
        )
    }

    engine: Literal["llamacpp", "vllm", "external"] = "llamacpp"
    """llamacpp (llama-server, CPU or GPU), vllm (GPU), or external (an OpenAI-compatible API)."""
    image: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """Model server image; the operator's default for the engine when unset."""
    models: Annotated[
        list[ServedModel],
        Field(min_length=1, max_length=16, json_schema_extra=list_map("name")),
    ]
    """Models to serve. llamacpp serves several through its router, vllm exactly one."""
    default: ModelName
    """Name of the model the agent uses unless told otherwise; one of models."""
    args: Annotated[list[Arg], Field(max_length=64)] = empty(list)
    """Extra arguments for llama-server or vllm serve."""
    resources: Resources = empty(Resources)
    """CPU and memory of the model server container."""
    gpus: Annotated[int, Field(ge=0, le=64)] | None = None
    """GPUs for the model server; vllm defaults to 1, llamacpp to 0."""
    gpu_resource_name: Annotated[
        str,
        matching(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
            "must be an extended resource name such as nvidia.com/gpu",
            max_length=253,
        ),
    ] = "nvidia.com/gpu"
    """Extended resource that counts GPUs on this cluster's nodes."""
    external: External | None = None
    """The endpoint, when engine is external."""


# --- credentials, egress, workspace ------------------------------------------------------------


class SecretKeyRef(Model):
    """A key of a Secret in the Agent's namespace."""

    name: DnsSubdomain
    """Name of the Secret."""
    key: Annotated[
        str,
        matching(
            r"^[-._a-zA-Z0-9]+$",
            "must be a Secret key: letters, digits, '-', '_', '.'",
            max_length=253,
        ),
    ]
    """Key within the Secret whose value is the real credential."""


class Injection(Model):
    """Have the vault sidecar add the credential to requests itself."""

    header: Annotated[
        str,
        matching(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "must be an HTTP header name", max_length=128),
    ] = "Authorization"
    """Header to set on requests to the credential's hosts."""
    format: Annotated[str, Field(max_length=256)] = Field(
        default="Bearer {value}",
        json_schema_extra=validations(
            rule("self.contains('{value}')", "must contain {value}, where the secret goes")
        ),
    )
    """Header value; {value} is replaced by the real credential."""


class Credential(Model):
    """A secret the agent uses without ever seeing it.

    The agent's environment holds a stub (stub_<name>_<random>) under `name`; the vault sidecar
    swaps the stub for the real value only on requests to `hosts`, and blocks it anywhere else.
    """

    model_config = Model.model_config | {"json_schema_extra": validations(_NOT_RESERVED)}

    name: EnvName
    """Environment variable the agent sees, holding the stub."""
    secret_ref: SecretKeyRef
    """Where the real value is kept. Only the vault sidecar mounts it."""
    hosts: Annotated[list[HostPattern], Field(min_length=1, max_length=32)]
    """Hosts the credential may be sent to: exact (api.github.com) or wildcard (*.github.com)."""
    injection: Injection | None = None
    """Add the credential as a header even when the agent does not send the stub."""
    swap_in_query: bool = False
    """Also swap the stub in URL query strings (off by default: URLs end up in logs)."""


class Egress(Model):
    """Network destinations beyond those of the credentials."""

    allow: Annotated[list[HostPattern], Field(max_length=128)] = empty(list)
    """Hosts the agent may reach without credentials (tunnelled, never decrypted)."""


class Workspace(Model):
    """The agent's persistent working directory (a PersistentVolumeClaim mounted at /workspace)."""

    size: Annotated[str, Field(max_length=64)] = Field(
        default="10Gi",
        json_schema_extra=validations(
            rule(
                "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
                "must be a positive storage quantity such as 10Gi",
            )
        ),
    )
    """Requested size of the volume."""
    storage_class_name: DnsSubdomain | None = Field(
        default=None,
        json_schema_extra=validations(
            rule("self == oldSelf", "spec.workspace.storageClassName cannot be changed")
        ),
    )
    """StorageClass of the volume; the cluster's default when unset. Cannot be changed."""
    deletion_policy: Literal["Delete", "Retain"] = "Delete"
    """Delete the volume with the Agent, or Retain it (it stays, owned by no one)."""


DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
IDLE_AFTER_MIN_SECONDS = 10
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def duration_seconds(duration: str) -> float:
    """Seconds in a duration as Kubernetes writes them (a Go duration of h, m and s: 1h30m, 90s)."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration such as 15m, 1h30m or 90s")
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)", duration)
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _long_enough(duration: str) -> str:
    if duration_seconds(duration) < IDLE_AFTER_MIN_SECONDS:
        raise ValueError(f"must be at least {IDLE_AFTER_MIN_SECONDS}s")
    return duration


class Lifecycle(Model):
    """When the operator suspends the Agent by itself."""

    idle_after: (
        Annotated[
            str,
            matching(
                DURATION_PATTERN, "must be a duration such as 15m, 1h30m or 90s", max_length=32
            ),
            AfterValidator(_long_enough),
        ]
        | None
    ) = Field(
        default=None,
        json_schema_extra=validations(
            rule(
                f"!self.matches(r'{DURATION_PATTERN}') || "
                f"duration(self) >= duration('{IDLE_AFTER_MIN_SECONDS}s')",
                f"spec.lifecycle.idleAfter must be at least {IDLE_AFTER_MIN_SECONDS}s",
            )
        ),
    )
    """Suspend the Agent after this long Ready and unused (at least 10s); a message wakes it."""


class AgentSpec(Model):
    """Desired state of an Agent."""

    model_config = Model.model_config | {
        "json_schema_extra": validations(
            rule(
                "self.harness.env.all(e, !self.credentials.exists(c, c.name == e.name))",
                "spec.harness.env must not set a variable that spec.credentials provides",
                field_path=".harness.env",
            ),
            rule(
                "self.model.engine != 'external' || !has(self.model.external) || "
                "self.credentials.exists(c, c.name == self.model.external.credential)",
                "spec.model.external.credential must be the name of one of spec.credentials",
                field_path=".model.external.credential",
            ),
            rule(
                "self.model.engine != 'external' || !has(self.model.external) || "
                "!self.credentials.exists(c, c.name == self.model.external.credential) || "
                "self.credentials.exists(c, "
                "c.name == self.model.external.credential && c.hosts.exists(h, "
                "h == url(self.model.external.baseURL).getHostname() || "
                "(h.startsWith('*.') && "
                "url(self.model.external.baseURL).getHostname().endsWith(h.substring(1)))))",
                "the host of spec.model.external.baseURL must be one of its credential's hosts",
                field_path=".model.external.baseURL",
            ),
        )
    }

    harness: Harness
    """The agent's container."""
    model: ModelSpec
    """The model server the agent talks to."""
    credentials: Annotated[
        list[Credential],
        Field(
            max_length=32,
            json_schema_extra=list_map("name"),
        ),
    ] = empty(list)
    """Secrets the agent may use through the vault sidecar, one per environment variable."""
    egress: Egress = empty(Egress)
    """Where else the agent may connect."""
    workspace: Workspace = empty(Workspace)
    """The persistent working directory."""
    suspend: bool = False
    """Delete the Pod, keep the workspace, until set back to false (a message does not resume)."""
    lifecycle: Lifecycle = empty(Lifecycle)
    """Automatic suspend when idle."""
    runtime_class_name: DnsSubdomain | None = None
    """RuntimeClass for the Pod (e.g. gvisor or kata for a stronger sandbox)."""


# --- status ------------------------------------------------------------------------------------

Phase = Literal["Pending", "Starting", "Ready", "Suspended", "Failed"]


class Condition(Model):
    """A condition, as Kubernetes API conventions define it."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """CredentialsReady, PodScheduled, ModelReady or Ready."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    """One CamelCase word that says why."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """A sentence for people."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation this condition was computed from."""


class AgentStatus(Model):
    """Observed state of an Agent, written by the operator."""

    phase: Phase | None = None
    """Pending, Starting, Ready, Suspended or Failed."""
    conditions: Annotated[
        list[Condition], Field(max_length=16, json_schema_extra=list_map("type"))
    ] = Field(default_factory=list)
    """Latest observations, one per type."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The .metadata.generation the operator last acted on."""
    pod_name: str | None = None
    """The sandbox Pod now serving the Agent."""
    endpoint: str | None = None
    """The runner's in-cluster URL."""
    model: str | None = None
    """The model the server is serving now."""
    restarts: Annotated[int, Field(ge=0)] = 0
    """How often the sandbox Pod was recreated."""
    last_activity_time: datetime | None = None
    """When the gateway last saw the Agent in use (written by the gateway, for idleAfter)."""
    idle_suspend_time: datetime | None = None
    """When the operator suspended the idle Agent; activity after it wakes the Agent."""
    wake_time: datetime | None = None
    """When activity woke the Agent suspended for being idle; cleared once it is Ready."""


class Agent(Model):
    """An AI coding agent in a sandbox Pod, next to its own model server."""

    api_version: Literal["paddock.dev/v1alpha1"] = API_VERSION
    kind: Literal["Agent"] = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AgentSpec
    status: AgentStatus = Field(default_factory=AgentStatus)


# Rules on the whole object (the API server lets CEL see metadata.name there).
ROOT_RULES = (
    rule(
        f"size(self.metadata.name) <= {NAME_MAX} && "
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        f"metadata.name must be a DNS label of at most {NAME_MAX} characters starting with a "
        "letter: it names the Agent's Pod, Service and volume",
    ),
)

PRINTER_COLUMNS = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Engine", "type": "string", "jsonPath": ".spec.model.engine"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.default"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)
