"""The CPU kernels against plain torch: GGUF-block linears, RoPE with the KV write, attention, and a
GGUF model run on its own blocks against the same model dequantized to fp32."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType, quants

from completion.model.blocks import BLOCK_FORMATS, BlockLinear, Blocks
from completion.model.checkpoint import Checkpoint
from completion.model.engine import Engine
from completion.model.kernels import cpu_ops
from completion.model.loading import LoadedModel
from completion.model.runner import Runner, _rope

REL = 1e-5  # fp32 products summed in another order


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    built = cpu_ops()
    if built is None:  # `make setup` builds them; a machine without a compiler runs the torch path
        pytest.skip("livekv's CPU kernels are not built on this machine")
    return built


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("name", sorted(BLOCK_FORMATS))
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 16, 17, 40])
def test_block_linear_equals_the_dequantized_matrix(ops: ModuleType, name: str, rows: int) -> None:
    torch.manual_seed(rows)
    kind = BLOCK_FORMATS[name]
    blocks = Blocks.quantize(torch.randn(67, 96), kind)  # an odd number of output rows
    dense = torch.from_numpy(quants.dequantize(blocks.data.numpy(), GGMLQuantizationType(kind))).float()
    assert torch.equal(blocks.rows(ops), dense)
    x, bias = torch.randn(rows, 96), torch.randn(67)
    want = x @ dense.T + bias
    assert rel(BlockLinear(ops, blocks, bias)(x), want) < REL
    into = torch.randn(rows, 67)
    expected = into + want
    BlockLinear(ops, blocks, bias).add_into(into, x)
    assert rel(into, expected) < REL
    ids = torch.tensor([66, 0, 5, 5])
    assert torch.equal(blocks.rows(ops, ids), dense[ids])


def test_block_shapes_are_checked(ops: ModuleType) -> None:
    blocks = Blocks.quantize(torch.randn(8, 64), BLOCK_FORMATS["q4_1"])
    with pytest.raises(RuntimeError, match="bytes per row"):
        ops.block_linear(torch.randn(1, 96), blocks.data, blocks.kind, None, None)
    with pytest.raises(ValueError, match="divisible by 32"):
        Blocks.quantize(torch.randn(8, 48), BLOCK_FORMATS["q8_0"])


@pytest.mark.parametrize("qk_norm", [False, True])
def test_rope_store_rotates_queries_and_keys_and_writes_the_cache(ops: ModuleType, qk_norm: bool) -> None:
    torch.manual_seed(1)
    heads, kv, hd, rows, at = 4, 2, 16, 3, 5
    qkv = torch.randn(rows, (heads + 2 * kv) * hd)
    angles = torch.randn(rows, hd // 2)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    keys, values = torch.zeros(kv, 12, hd), torch.zeros(kv, 12, hd)
    norm_q, norm_k = (torch.rand(hd) + 0.5, torch.rand(hd) + 0.5) if qk_norm else (None, None)
    got = ops.rope_store(qkv, cos, sin, keys, values, at, heads, norm_q, norm_k, 1e-6)
    heads_first = qkv.view(rows, heads + 2 * kv, hd).transpose(0, 1)
    q, k, v = heads_first[:heads], heads_first[heads : heads + kv], heads_first[heads + kv :]
    if norm_q is not None and norm_k is not None:
        q, k = F.rms_norm(q, (hd,), norm_q, 1e-6), F.rms_norm(k, (hd,), norm_k, 1e-6)
    assert rel(got.transpose(0, 1), _rope(q, cos[None], sin[None])) < REL
    assert rel(keys[:, at : at + rows], _rope(k, cos[None], sin[None])) < REL
    assert torch.equal(values[:, at : at + rows], v)
    assert not keys[:, :at].any() and not keys[:, at + rows :].any()


@pytest.mark.parametrize("rows,at,masked", [(1, 0, False), (1, 300, False), (7, 250, False), (16, 40, True)])
def test_attend_equals_sdpa_with_grouped_heads(ops: ModuleType, rows: int, at: int, masked: bool) -> None:
    torch.manual_seed(rows + at)
    heads, kv, hd = 6, 2, 32
    end = at + rows
    q = torch.randn(rows, heads, hd)
    keys, values = torch.randn(kv, end + 9, hd), torch.randn(kv, end + 9, hd)
    if masked:  # a tree mask: each row sees a random subset, itself always
        visible = torch.rand(rows, end) < 0.5
        visible[torch.arange(rows), at + torch.arange(rows)] = True
    else:
        visible = torch.arange(end)[None, :] <= (at + torch.arange(rows))[:, None]
    want = (
        F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            keys[None, :, :end],
            values[None, :, :end],
            attn_mask=visible,
            scale=0.2,
            enable_gqa=True,
        )[0]
        .transpose(0, 1)
        .reshape(rows, heads * hd)
    )
    got = ops.attend(q, keys, values, end, at, visible if masked else None, 0.2)
    assert rel(got, want) < REL


def test_silu_mul_and_rms_norm(ops: ModuleType) -> None:
    torch.manual_seed(2)
    gate_up, x, w = torch.randn(5, 2 * 37) * 6, torch.randn(3, 40), torch.rand(40)
    gate, up = gate_up.chunk(2, -1)
    assert rel(ops.silu_mul(gate_up), F.silu(gate) * up) < REL
    assert rel(ops.rms_norm(x, w, 1e-6), F.rms_norm(x, (40,), w, 1e-6)) < REL


@pytest.mark.integration
def test_the_embedded_gguf_runs_on_its_own_blocks_as_the_model_it_is(embedded: LoadedModel, ops: ModuleType) -> None:
    """The default format reads the file's Q4_1/Q8_0 blocks; fp32 is the same file dequantized by transformers."""
    assert embedded.gguf is not None
    blocks = Runner(Checkpoint.from_gguf(embedded.gguf, embedded.model.config), "gguf")
    assert isinstance(blocks.layers[0].qkv, BlockLinear) and isinstance(blocks.embed_weight, Blocks)
    fp32 = Runner(embedded.model, "fp32")
    ids = torch.tensor(embedded.tokenizer("import os\n\ndef main(argv):\n    parser = argparse.").input_ids)
    outs = []
    for runner in (blocks, fp32):
        keys, values = runner.new_buffer(64)
        logits = runner.forward(keys, values, ids, torch.arange(len(ids)), 0, logits="all")
        assert logits is not None
        outs.append((logits, keys[:, :, : len(ids)]))
    assert rel(outs[0][0], outs[1][0]) < 1e-4
    assert torch.equal(outs[0][0].argmax(-1), outs[1][0].argmax(-1))
    assert rel(outs[0][1], outs[1][1]) < 1e-4
    engine = Engine.from_loaded(embedded)  # the default: auto
    assert engine.runner.weight_format == "gguf"


def test_quantized_blocks_round_trip_through_numpy_reference() -> None:
    weight = torch.randn(4, 64)
    blocks = Blocks.quantize(weight, BLOCK_FORMATS["q8_0"])
    back = quants.dequantize(blocks.data.numpy(), GGMLQuantizationType.Q8_0)
    assert np.abs(back - weight.numpy()).max() < 0.05
