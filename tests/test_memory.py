import math

import pytest

from membudget.fit import BudgetError, Grid, fit
from membudget.memory import (
    GIB,
    KVPolicy,
    PolicyError,
    Scenario,
    breakdown,
    kv_bytes,
    kv_bytes_per_token,
    parse_size,
    weight_bytes,
)
from membudget.spec import resolve_spec

KIB = 1024


@pytest.mark.parametrize(
    "model, kib",
    [
        ("Qwen3-0.6B", 112),
        ("Qwen3-1.7B", 112),
        ("Qwen3-4B", 144),
        ("Qwen3-8B", 144),
        ("Qwen3-14B", 160),
        ("Qwen3-32B", 256),
    ],
)
def test_kv_per_token_matches_design_table(model, kib):
    assert kv_bytes_per_token(resolve_spec(model)) == kib * KIB


def test_hand_calculations():
    assert kv_bytes_per_token(resolve_spec("Qwen3-8B")) == 147_456
    spec = resolve_spec("Qwen3-0.6B")
    assert round(kv_bytes(spec, KVPolicy(), 30_000) / GIB, 2) == 3.20
    # study formula: N_q*b/8 + (N_q/128)*(16+b)/8 + N_u*2 (all Qwen3 in_features are multiples of 128)
    spec8 = resolve_spec("Qwen3-8B")
    n_q, n_u = spec8.quantizable_params, spec8.kept_params
    assert weight_bytes(spec8, 8) == n_q + n_q // 128 * 3 + 2 * n_u
    assert weight_bytes(spec8, 4) == n_q // 2 + n_q // 128 * 20 // 8 + 2 * n_u
    assert weight_bytes(spec8, 16) == 2 * (n_q + n_u)
    # "8-bit 4B" is the study's threshold of about 4.2 GiB of weights
    assert weight_bytes(resolve_spec("Qwen3-4B"), 8) / GIB == pytest.approx(4.2, abs=0.05)


def test_weight_groups_round_up_for_odd_widths():
    spec = resolve_spec("smollm2")  # hidden 576 = 4.5 groups of 128
    assert spec.quant_groups() > spec.quantizable_params / 128


def test_quantized_kv_bytes():
    spec = resolve_spec("Qwen3-8B")
    elements = 36 * 8 * 128 * 2
    for bits in (2, 4, 8):
        per_token = elements * (bits / 8 + 32 / (8 * 64))
        expected = math.ceil(10_000 * per_token) + 128 * 147_456
        assert kv_bytes(spec, KVPolicy(bits=bits), 10_000) == expected
        assert kv_bytes(spec, KVPolicy(bits=bits), 10_000, samples=3) == 3 * expected
    # a short sequence holds only its own tokens in the residual window
    assert kv_bytes(spec, KVPolicy(bits=8), 50) == math.ceil(50 * elements * (1 + 0.0625)) + 50 * 147_456


def test_eviction_holds_budget_plus_declared_slack():
    spec = resolve_spec("Qwen3-0.6B")
    per = kv_bytes_per_token(spec)
    rkv = KVPolicy.parse("rkv:4096")
    assert rkv.held_tokens(30_000) == 4096 + 128
    assert rkv.held_tokens(1000) == 1000
    assert KVPolicy.parse("streaming:4096").held_tokens(30_000) == 4096 + 128
    assert rkv.held_tokens(4100) == 4100  # never more than it would hold uncompressed
    assert rkv.held_tokens(30_000, answer_slots=40) == 4096 + 128 + 40
    # the state: the 8 newest queries (+1 spare) per layer and query head, in 16 bits
    state = spec.num_layers * spec.num_heads * 9 * spec.head_dim * 2
    assert rkv.state_bytes(spec, 4096 + 128) == state
    assert kv_bytes(spec, rkv, 30_000, samples=2) == 2 * ((4096 + 128) * per + state)
    h2o = KVPolicy.parse("h2o:4096")  # 128 queries and a fp32 score per held slot and KV head
    scores = spec.num_layers * spec.num_kv_heads * (4096 + 128) * 4
    assert (
        h2o.state_bytes(spec, 4096 + 128)
        == spec.num_layers * spec.num_heads * 129 * spec.head_dim * 2 + scores
    )
    assert KVPolicy.parse("streaming:64").state_bytes(spec, 192) == 0
    both = KVPolicy.parse("quant:8+rkv:4096")
    assert str(both) == "rkv:4096+quant:8"
    assert kv_bytes(spec, both, 30_000) == kv_bytes(spec, KVPolicy(bits=8), 4096 + 128) + state


@pytest.mark.parametrize(
    "text",
    [
        "",
        "quant",
        "quant:3",
        "rkv:0",
        "rkv:-5",
        "lru:100",
        "rkv:10+h2o:10",
        "quant:8+quant:4",
        "rkv:4096+",
        "full+quant:8",
    ],
)
def test_malformed_policies(text):
    with pytest.raises(PolicyError, match="expected 'full'"):
        KVPolicy.parse(text)


def test_conventions_and_prompt():
    spec = resolve_spec("Qwen3-8B")
    all_ = breakdown(spec, Scenario("Qwen3-8B", 16, "full", 1000, samples=4, prompt_tokens=500))
    study = breakdown(
        spec, Scenario("Qwen3-8B", 16, "full", 1000, samples=4, prompt_tokens=500, convention="study")
    )
    assert all_.kv_bytes == 4 * 1500 * 147_456
    assert study.kv_bytes == 4 * 1000 * 147_456
    assert study.workspace_bytes == 0 < all_.workspace_bytes
    assert all_.total_bytes == all_.weights_bytes + all_.kv_bytes + all_.workspace_bytes
    d = all_.to_dict()
    for key in ("weights", "kv", "workspace", "total"):
        assert d[f"{key}_gib"] == round(d[f"{key}_bytes"] / GIB, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tokens=0),
        dict(tokens=-5),
        dict(samples=0),
        dict(weights=3),
        dict(prompt_tokens=-1),
        dict(convention="vllm"),
    ],
)
def test_bad_scenarios(kwargs):
    fields = dict(model="m", weights=16, kv="full", tokens=10) | kwargs
    with pytest.raises(ValueError):
        Scenario(**fields)


def test_parse_size():
    assert parse_size("24GiB") == 24 * GIB
    assert parse_size("24GB") == 24 * 10**9
    assert parse_size("24G") == parse_size("24") == parse_size("24 gib") == 24 * GIB
    assert parse_size("1.5TiB") == int(1.5 * 2**40)
    assert parse_size("512MiB") == 512 * 2**20
    for bad in ("", "GiB", "24 parsecs", "-3GiB", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_fit_never_exceeds_budget_and_is_sorted():
    specs = [resolve_spec("Qwen3-4B"), resolve_spec("Qwen3-8B")]
    rows = fit(specs, 24 * GIB)
    assert rows and all(r.total_bytes <= 24 * GIB for r in rows)
    assert [r.total_bytes for r in rows] == sorted(r.total_bytes for r in rows)
    grid = Grid()
    every = [breakdown(s, sc) for s in specs for sc in grid.scenarios(s.name)]
    assert len(rows) == sum(b.total_bytes <= 24 * GIB for b in every)
    assert any(b.total_bytes > 24 * GIB for b in every)  # the budget really cuts
    assert not any(r.kv.startswith("rkv:8192") and r.tokens <= 8192 for r in rows)


def test_fit_rejects_budget_below_weights_and_bad_grids():
    with pytest.raises(BudgetError, match="cannot hold even the weights"):
        fit([resolve_spec("Qwen3-8B")], 2 * GIB)
    with pytest.raises(ValueError):
        Grid(tokens=[0])
    with pytest.raises(PolicyError):
        Grid(kv=["bogus"])
