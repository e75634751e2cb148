"""Tiny random-weight GGUF models: deterministic, small, and complete enough for llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader

from paddock.cli import main
from paddock.models.tiny import CHAT_TEMPLATE, write_tiny_llama

pytestmark = pytest.mark.unit


def _field(reader: GGUFReader, name: str) -> object:
    return reader.fields[name].contents()


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a = write_tiny_llama(tmp_path / "a.gguf", seed=7).read_bytes()
    b = write_tiny_llama(tmp_path / "b.gguf", seed=7).read_bytes()
    c = write_tiny_llama(tmp_path / "c.gguf", seed=8).read_bytes()

    assert a == b
    assert a != c
    assert len(a) < 1_000_000


def test_the_model_carries_a_llama_header_tokenizer_and_tool_aware_chat_template(
    tmp_path: Path,
) -> None:
    reader = GGUFReader(write_tiny_llama(tmp_path / "m.gguf", seed=1))

    assert _field(reader, "general.architecture") == "llama"
    assert len(_field(reader, "tokenizer.ggml.tokens")) == 260  # type: ignore[arg-type]
    assert _field(reader, "tokenizer.chat_template") == CHAT_TEMPLATE
    assert "<tool_call>" in CHAT_TEMPLATE
    assert {t.name for t in reader.tensors} >= {"token_embd.weight", "blk.1.ffn_down.weight"}


def test_the_cli_writes_name_dot_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "tiny", "--out", str(tmp_path), "--seed", "3", "--name", "demo"]) == 0

    assert capsys.readouterr().out.strip() == str(tmp_path / "demo.gguf")
    assert (tmp_path / "demo.gguf").read_bytes() == write_tiny_llama(
        tmp_path / "x.gguf", 3
    ).read_bytes()
