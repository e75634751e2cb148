"""Tiny random-weight llama models as GGUF files: real enough for llama-server, a few hundred KB.

The weights are noise, so the text is gibberish, but everything around it is real: llama-server
loads the file, tokenizes, streams tokens, applies the chat template (with --jinja, tools
included) and follows JSON-schema-constrained output. The same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType

CHAT_TEMPLATE = resources.files("paddock.models").joinpath("chat_template.jinja").read_text()
"""ChatML with Hermes-style tool calls, the format llama-server's --jinja parses tool calls from."""

_BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
# SentencePiece writes a space as U+2581; with it and the 256 byte tokens any text tokenizes.
_VOCAB = ["<unk>", "<s>", "</s>", "\u2581", *_BYTE_TOKENS]
_TYPES = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, TokenType.NORMAL] + [
    TokenType.BYTE
] * 256


@dataclass(frozen=True)
class TinyShape:
    """Hyper-parameters of a tiny llama (defaults: ~470 KB in float32)."""

    context: int = 4096
    """Training context: byte-level tokens make prompts long, and RoPE needs no table for it."""
    embedding: int = 64
    blocks: int = 2
    heads: int = 4
    feed_forward: int = 128

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.embedding // self.heads


def write_tiny_llama(path: Path, seed: int, shape: TinyShape = TinyShape()) -> Path:
    """Write a random-weight llama GGUF to `path`, the same bytes for the same seed and shape."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(path, "llama")
    writer.add_name(f"paddock-tiny-{seed}")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.embedding)
    writer.add_block_count(shape.blocks)
    writer.add_feed_forward_length(shape.feed_forward)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(_VOCAB)
    writer.add_token_scores([0.0] * len(_VOCAB))
    writer.add_token_types(_TYPES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _tensors(rng, shape):
        writer.add_tensor(name, tensor, raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tensors(
    rng: np.random.Generator, shape: TinyShape
) -> list[tuple[str, np.ndarray[tuple[int, ...], np.dtype[np.float32]]]]:
    """The llama tensors, numpy shapes in GGUF's reversed order (rows = output features)."""
    vocab, embd, ff = len(_VOCAB), shape.embedding, shape.feed_forward

    def weight(*dims: int) -> np.ndarray[tuple[int, ...], np.dtype[np.float32]]:
        # Small weights keep activations tame, so sampling does not collapse onto one token.
        return (rng.standard_normal(dims) * 0.05).astype(np.float32)

    def norm() -> np.ndarray[tuple[int, ...], np.dtype[np.float32]]:
        return np.ones(embd, dtype=np.float32)

    tensors = [("token_embd.weight", weight(vocab, embd)), ("output_norm.weight", norm())]
    tensors.append(("output.weight", weight(vocab, embd)))
    for i in range(shape.blocks):
        tensors += [
            (f"blk.{i}.attn_norm.weight", norm()),
            (f"blk.{i}.attn_q.weight", weight(embd, embd)),
            (f"blk.{i}.attn_k.weight", weight(embd, embd)),
            (f"blk.{i}.attn_v.weight", weight(embd, embd)),
            (f"blk.{i}.attn_output.weight", weight(embd, embd)),
            (f"blk.{i}.ffn_norm.weight", norm()),
            (f"blk.{i}.ffn_gate.weight", weight(ff, embd)),
            (f"blk.{i}.ffn_up.weight", weight(ff, embd)),
            (f"blk.{i}.ffn_down.weight", weight(embd, ff)),
        ]
    return tensors
