"""Real code models' shapes with random weights, written as Q4_1 GGUF files, for `bench speed`.

Speed depends on shapes, not on trained values, so a 0.5B or 1.5B Qwen2-family model can be
measured without downloading one: the configurations are Qwen2.5-Coder's (written out here),
the weights random Q4_1 blocks (an fp16 scale and minimum of a realistic size, random 4-bit
codes), norms one, biases zero, embeddings tied as in those models. The file has no vocabulary
(`tokenizer.ggml.model = "no_vocab"`), which llama.cpp's `llama-bench` accepts, so both engines
time the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from transformers import Qwen2Config

from completion.model.paths import cache_root

# Qwen2.5-Coder-0.5B and -1.5B (config.json of the released models).
SHAPES: dict[str, dict[str, int | float | bool]] = {
    "qwen2-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "qwen2-1.5b": {
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
}
Q4_1_BYTES = 20  # per block of 32: fp16 scale, fp16 minimum, 16 bytes of codes


def shape_config(name: str) -> Qwen2Config:
    return Qwen2Config(**SHAPES[name], use_sliding_window=False)


def _random_q4_1(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(rows, cols // 32, Q4_1_BYTES), dtype=np.uint8)
    scale = np.float16(0.02 / np.sqrt(cols / 1024)).tobytes()  # weights of about N(0, 0.02) at width 1024
    minimum = np.float16(-7.5 * np.frombuffer(scale, np.float16)[0]).tobytes()
    blocks[:, :, 0:2] = np.frombuffer(scale, np.uint8)
    blocks[:, :, 2:4] = np.frombuffer(minimum, np.uint8)
    return blocks.reshape(rows, -1)


def write_shape_gguf(name: str, path: Path, seed: int = 0) -> Path:
    """The shape's random Q4_1 GGUF at `path` (written once: an existing file is reused)."""
    if path.is_file():
        return path
    c = shape_config(name)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(tmp, "qwen2")
    writer.add_name(f"{name} (random weights, livekv bench speed)")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_freq_base(float(SHAPES[name]["rope_theta"]))
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_tokenizer_model("no_vocab")
    writer.add_file_type(3)  # LLAMA_FTYPE_MOSTLY_Q4_1
    hidden, head_dim = c.hidden_size, c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim

    def q4_1(tensor: str, rows: int, cols: int) -> None:
        writer.add_tensor(tensor, _random_q4_1(rng, rows, cols), raw_dtype=GGMLQuantizationType.Q4_1)

    q4_1("token_embd.weight", c.vocab_size, hidden)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for i in range(c.num_hidden_layers):
        b = f"blk.{i}."
        writer.add_tensor(b + "attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(b + "ffn_norm.weight", np.ones(hidden, np.float32))
        q4_1(b + "attn_q.weight", hidden, hidden)
        q4_1(b + "attn_k.weight", kv, hidden)
        q4_1(b + "attn_v.weight", kv, hidden)
        for part, width in (("attn_q", hidden), ("attn_k", kv), ("attn_v", kv)):
            writer.add_tensor(b + part + ".bias", np.zeros(width, np.float32))
        q4_1(b + "attn_output.weight", hidden, hidden)
        q4_1(b + "ffn_gate.weight", c.intermediate_size, hidden)
        q4_1(b + "ffn_up.weight", c.intermediate_size, hidden)
        q4_1(b + "ffn_down.weight", hidden, c.intermediate_size)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def shape_gguf(name: str) -> Path:
    """Where the shape's file is cached (written on first use)."""
    return write_shape_gguf(name, cache_root() / "shapes" / f"{name}-q4_1.gguf")
