"""Weight formats: each linear is close to fp32 within its stated tolerance, and PIE stays exact in each.

Tolerances (relative error of a layer's output on random weights and inputs): bf16 1%,
int8-wo 2%, int8 (activations quantized too) 4%, int4-wo 15%. PIE's rotation does not
depend on the weight format: in every format, layer-0 keys rotated to new positions equal
keys encoded there to 1e-4, and a refreshed cache gives a full encode's logits to 1e-4;
except int8, whose per-pass activation scale makes a key depend on the other tokens of its
pass (measured 0.07 on keys, 0.02 on logits of magnitude 0.7; bounds 0.1 and 0.05).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from completion.live.document import LiveDocument, TextEdit, UpdatePolicy
from completion.model.engine import Engine
from completion.model.formats import DENSE_FORMATS, FORMATS, make_linear
from tests.conftest import tiny_model

LINEAR_TOLERANCE = {"fp32": 1e-6, "bf16": 0.01, "int8-wo": 0.02, "int8": 0.04, "int4-wo": 0.15}
BLOCKS = {"q4_0": 1e-4, "q4_1": 1e-4, "q8_0": 1e-4}  # the kernels' arithmetic is fp32: exact up to summation order
LOGIT_TOLERANCE = {"fp32": 1e-4, "bf16": 1e-4, "int8-wo": 1e-4, "int8": 0.05, "int4-wo": 1e-4, **BLOCKS}
PIE_TOLERANCE = {"fp32": 1e-4, "bf16": 1e-4, "int8-wo": 1e-4, "int8": 0.1, "int4-wo": 1e-4, **BLOCKS}
SOURCE = "".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n" for i in range(12))


@pytest.mark.parametrize("weight_format", DENSE_FORMATS)
def test_linear_is_close_to_fp32(weight_format: str) -> None:
    torch.manual_seed(0)
    weight, bias, x = torch.randn(96, 64) * 0.05, torch.randn(96) * 0.1, torch.randn(5, 64)
    want = torch.nn.functional.linear(x, weight, bias)
    got = make_linear(weight_format, weight, bias)(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert ((got - want).norm() / want.norm()).item() <= LINEAR_TOLERANCE[weight_format]


def test_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="weight format must be one of"):
        make_linear("fp8", torch.zeros(4, 4), None)


@pytest.fixture(scope="module")
def engines(tokenizer: PreTrainedTokenizerBase) -> Callable[[str], Engine]:
    model = tiny_model("llama", len(tokenizer))
    made: dict[str, Engine] = {}

    def make(weight_format: str) -> Engine:
        if weight_format not in made:
            made[weight_format] = Engine.from_model(model, tokenizer, weight_format)
        return made[weight_format]

    return make


@pytest.mark.parametrize("weight_format", [f for f in FORMATS if f != "gguf"])  # gguf: test_gguf_weights
def test_pie_rotation_is_exact_in_every_format(engines: Callable[[str], Engine], weight_format: str) -> None:
    engine = engines(weight_format)
    at = SOURCE.index("def f3")
    live = LiveDocument(engine, SOURCE, fim=False, policy=UpdatePolicy.PIE)
    live.apply_edits([TextEdit(at, at, "import os\n")])
    ref = LiveDocument(engine, live.text, fim=False)  # encoded from scratch: exact
    assert live.tokens == ref.tokens
    # layer-0 keys depend only on token and position: rotated ones must equal freshly encoded ones
    error = (live.kv.dense()[0][0] - ref.kv.dense()[0][0]).abs().max().item()
    assert error <= PIE_TOLERANCE[weight_format]
    # and after a refresh the logits equal a full encode's in the same format
    live.refresh()
    assert (live.prompt_logits() - ref.prompt_logits()).abs().max().item() <= LOGIT_TOLERANCE[weight_format]
