"""The runner's settings, from PADDOCK_RUNNER_* environment variables (and PADDOCK_MODEL_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paddock.sandbox import MODEL_NAME_ENV, MODEL_PORT, MODEL_URL_ENV, RUNNER_PORT, WORKSPACE_DIR
from paddock_runner.agent.tools import TOOL_NAMES

TOOL_CHOICES = ("auto", "required", "none")


class RunnerSettings(BaseSettings):
    """Everything the runner process is told; unsafe or contradictory values are refused."""

    model_config = SettingsConfigDict(env_prefix="PADDOCK_RUNNER_", frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 - the gateway reaches the runner over the Pod network
    port: Annotated[int, Field(ge=1, le=65535)] = RUNNER_PORT
    workspace: Path = Path(WORKSPACE_DIR)
    """Where the agent works; its file tools refuse paths outside it."""
    harness: Literal["agent", "command"] = "agent"
    """agent: the built-in coding agent; command: a command-line harness run once per turn."""
    keep_turns: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Finished turns whose events stay readable (the gateway may reconnect after a turn ends)."""

    # --- the built-in agent ----------------------------------------------------------------------
    model_url: str = Field(
        default=f"http://127.0.0.1:{MODEL_PORT}/v1",
        validation_alias=AliasChoices("PADDOCK_RUNNER_MODEL_URL", MODEL_URL_ENV),
        pattern=r"^https?://[^/\s]+(/\S*)?$",
    )
    """OpenAI-compatible base URL (ends in /v1)."""
    model: str | None = Field(
        default=None, validation_alias=AliasChoices("PADDOCK_RUNNER_MODEL", MODEL_NAME_ENV)
    )
    """Model to use when neither the turn nor the server's loaded model says which."""
    tool_mode: Literal["native", "constrained"] = "native"
    """native: the API's tool calls; constrained: JSON-schema output names a tool (tiny models)."""
    tool_choice: str = "auto"
    """For each turn's first step: auto, required, none, or one tool's name."""
    max_steps: Annotated[int, Field(ge=1, le=200)] = 16
    """Model calls per turn; the last one may not call tools, so every turn ends in an answer."""
    max_tokens: Annotated[int, Field(ge=1, le=131_072)] = 2048
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    system_prompt: str | None = None
    """Replaces the built-in system prompt."""
    shell_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120
    output_limit: Annotated[int, Field(ge=256, le=10_000_000)] = 16_000
    """Characters of a tool's output that go back to the model."""
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 600

    # --- a command-line harness ------------------------------------------------------------------
    command: list[str] = Field(default_factory=list)
    """argv (JSON list); `{message}` in an argument is replaced by the user's message."""
    command_input: Literal["argument", "stdin"] = "argument"
    """How the message reaches the command: as an argument (appended unless placed), or stdin."""
    command_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 3600

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if not self.workspace.is_absolute() or not self.workspace.is_dir():
            raise ValueError(
                f"workspace must be an existing directory's absolute path: {self.workspace}"
            )
        if self.tool_choice not in (*TOOL_CHOICES, *TOOL_NAMES):
            choices = ", ".join((*TOOL_CHOICES, *TOOL_NAMES))
            raise ValueError(f"tool_choice must be one of {choices}, not {self.tool_choice!r}")
        if self.harness == "command" and not self.command:
            raise ValueError(
                "PADDOCK_RUNNER_COMMAND (a JSON argv) is required with harness=command"
            )
        if self.harness == "agent" and self.command:
            raise ValueError("PADDOCK_RUNNER_COMMAND is set but harness is agent: set one")
        return self
