"""The benchmark's roofline bytes and cache filling (the timing itself needs a GPU: bench/RESULTS.md in git history)."""

import torch

from membudget.engine.kvquant import RESIDUAL
from membudget.engine.model import Decoder
from membudget.memory import kv_bytes_per_token
from membudget.spec import ModelSpec
from membudget.timing import fill_random, step_bytes


def tiny_model() -> Decoder:
    spec = ModelSpec.from_config(
        {
            "model_type": "qwen3",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "vocab_size": 300,
            "tie_word_embeddings": True,
        }
    )
    return Decoder.random(spec, torch.bfloat16, "cpu")


def test_step_bytes_reads_codes_and_the_exact_ring():
    model = tiny_model()
    exact = kv_bytes_per_token(model.spec, None)
    assert step_bytes(model, 3, 1000) == model.weight_bytes + 3 * 1000 * exact
    for bits in (8, 4):
        codes = kv_bytes_per_token(model.spec, bits)
        quant = model.weight_bytes + 3 * ((1000 - RESIDUAL) * codes + RESIDUAL * exact)
        assert step_bytes(model, 3, 1000, bits) == int(quant)
    # within the ring every token is read exact
    assert step_bytes(model, 2, 100, 4) == step_bytes(model, 2, 100)
    assert step_bytes(model, 2, 5000, 4) < step_bytes(model, 2, 5000, 8) < step_bytes(model, 2, 5000)


def test_fill_random_writes_every_buffer():
    model = tiny_model()
    for kv in ("full", "quant:4"):
        cache = model.new_cache(2, 300, kv)
        fill_random(cache)
        store = cache.store
        names = ("k", "v") if kv == "full" else ("kc", "vc", "ks", "vs", "kr", "vr")
        for name in names:
            for t in getattr(store, name):
                assert t.ne(0).float().mean() > 0.9, f"{kv}: {name} left mostly zeros"
