"""Int8 dynamic quantization of a tiny model, and load_model's validation of the quantization setting."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

from completion.model import load_model
from completion.quantize import QUANTIZATIONS, quantize_int8
from tests.conftest import tiny_model

VOCAB = 512


def linears(model: torch.nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is torch.nn.Linear]


def test_int8_replaces_every_linear_and_keeps_the_logits_close() -> None:
    fp32 = tiny_model("llama", VOCAB)
    names = linears(fp32)
    assert len(names) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the head
    model = copy.deepcopy(fp32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = quantize_int8(model)
    assert out is model  # in place
    assert caught == []
    assert linears(model) == []
    assert {name for name, m in model.named_modules() if isinstance(m, DynamicInt8Linear)} == set(names)

    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        ref = fp32(ids).logits[0]  # (24, VOCAB)
        got = model(ids).logits[0]
    assert caught == []
    assert not torch.equal(ref, got)  # the weights really changed
    cosine = torch.nn.functional.cosine_similarity(ref, got, dim=-1)  # (24,)
    assert cosine.min().item() > 0.99, cosine
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean().item() >= 0.9


def test_quantizations_are_none_and_int8() -> None:
    assert QUANTIZATIONS == ("none", "int8")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "bogus"}, "quantization"),
        ({"quantization": "int8", "dtype": "bfloat16"}, "int8 quantization needs dtype float32"),
        ({"quantization": "int8", "dtype": "float16"}, "int8 quantization needs dtype float32"),
        ({"dtype": "float64"}, "dtype"),
    ],
)
def test_load_model_rejects_bad_quantization_settings_before_loading(kwargs: dict[str, str], message: str) -> None:
    # a path that does not exist: the check must come first, or this would raise ModelLoadError
    with pytest.raises(ValueError, match=message):
        load_model("/nonexistent/model", **kwargs)
