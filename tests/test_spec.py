import json

import pytest
import torch

from membudget.memory import weight_bytes
from membudget.spec import ModelSpec, SpecError, known_models, resolve_spec

from .conftest import tiny_config

# Published sizes (model cards): total and non-embedding parameters, in billions.
PUBLISHED = {
    "Qwen/Qwen3-0.6B": (0.6, 0.44),
    "Qwen/Qwen3-1.7B": (1.7, 1.4),
    "Qwen/Qwen3-4B": (4.0, 3.6),
    "Qwen/Qwen3-8B": (8.2, 6.95),
    "Qwen/Qwen3-14B": (14.8, 13.2),
    "Qwen/Qwen3-32B": (32.8, 31.2),
}


@pytest.mark.parametrize("model_id", list(PUBLISHED))
def test_qwen3_parameter_counts_match_model_cards(model_id):
    spec = resolve_spec(model_id)
    total, non_embedding = PUBLISHED[model_id]
    embeddings = spec.vocab_size * spec.hidden_size * (1 if spec.tie_word_embeddings else 2)
    assert spec.total_params / 1e9 == pytest.approx(total, abs=0.05 * total)
    digits = len(str(non_embedding).split(".")[1])
    assert round((spec.total_params - embeddings) / 1e9, digits) == non_embedding


def test_registry_names_resolve_case_and_org_insensitive():
    assert resolve_spec("qwen3-8b").name == "Qwen/Qwen3-8B"
    assert resolve_spec("QWEN/QWEN3-8B").name == "Qwen/Qwen3-8B"
    assert resolve_spec("smollm2").name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(known_models()) == 12
    for model_id in known_models():
        assert resolve_spec(model_id).total_params > 1e8


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("tied", [True, False])
def test_counts_equal_what_torch_allocates(model_type, tied):
    """bf16 bytes of a real transformers model == accounted 16-bit weight bytes; linear split too."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, tie_word_embeddings=tied)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    spec = ModelSpec.from_config(config.to_dict(), name=model_type)
    unique = {p.data_ptr(): p for p in model.parameters()}.values()  # tied weights count once
    assert sum(p.numel() * p.element_size() for p in unique) == weight_bytes(spec, 16)
    linear = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in n
    )
    assert linear == spec.quantizable_params
    assert spec.qkv_bias == (model_type == "qwen2")
    assert spec.qk_norm == (model_type == "qwen3")


def test_local_directory_and_config_json(tmp_path):
    config = tiny_config("qwen3").to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_spec(str(tmp_path)).head_dim == 24
    assert resolve_spec(str(tmp_path / "config.json")).num_kv_heads == 2


def test_gguf_config_matches_registry(smollm2_gguf):
    from_gguf = resolve_spec(str(smollm2_gguf))
    registered = resolve_spec("smollm2")
    for field in (
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "vocab_size",
        "tie_word_embeddings",
    ):
        assert getattr(from_gguf, field) == getattr(registered, field), field


def test_bad_models_fail_clearly(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SpecError, match="not in the offline registry.*Known offline"):
        resolve_spec("nobody/no-such-model")
    with pytest.raises(SpecError, match="not a hub id"):
        resolve_spec("no-such-model")
    with pytest.raises(SpecError, match="no config.json"):
        resolve_spec(str(tmp_path))
    with pytest.raises(SpecError, match="no such file"):
        resolve_spec(str(tmp_path / "model.gguf"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpecError, match="not a JSON config"):
        resolve_spec(str(tmp_path / "bad.json"))
    with pytest.raises(SpecError, match="not supported"):
        ModelSpec.from_config({"model_type": "mamba"})
    with pytest.raises(SpecError, match="lacks the field"):
        ModelSpec.from_config({"model_type": "llama", "hidden_size": 8})
