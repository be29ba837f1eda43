"""KV policies: eviction (streaming, rkv, h2o, snapkv) and packed quantization, on the CPU."""

import copy
import dataclasses

import pytest
import torch

from membudget.engine.cache import Where
from membudget.engine.generate import GenerationConfig, Generator
from membudget.engine.kvquant import dequantize, pack, quantize, unpack
from membudget.engine.model import Decoder
from membudget.engine.policies import POLICIES
from membudget.engine.sampling import SamplingParams
from membudget.memory import KVPolicy, kv_bytes
from membudget.spec import ModelSpec, resolve_spec

from .conftest import THINK_CLOSE, tiny_model, tiny_tokenizer

EVICTIONS = list(POLICIES)


def decoder_of(model) -> Decoder:
    return Decoder.from_hf(copy.deepcopy(model), ModelSpec.from_config(model.config.to_dict()))


@pytest.fixture(scope="module")
def qwen():
    """A tiny Qwen3 with head_dim 64 (quantizable), its </think> boosted, and a word tokenizer."""
    model = tiny_model("qwen3", seed=5, boost={THINK_CLOSE: 2.0}, head_dim=64)
    return Generator(decoder_of(model), tiny_tokenizer())


PROMPT = [1, 10, 11, 12, 13, 14, 15]
SAMPLING = SamplingParams(temperature=1.0, top_p=0.95, top_k=50)


def run(gen, kv, **kwargs):
    fields = dict(budgets=(40,), samples=3, answer_tokens=5, answer_prefix="w7 w8", sampling=SAMPLING, seed=3)
    return gen.generate(PROMPT, GenerationConfig(**(fields | kwargs), kv=kv))


def step_through(decoder, cache, ids: list[int], prompt: int, rows: int = 1, after_write=None):
    """Prefill ids[:prompt], then feed the rest one token per step (the same in every row); returns
    the logits [rows, V] of every decode step. `after_write(step)` runs between a step and its
    compaction."""
    decoder.prefill(torch.tensor(ids[:prompt]), cache)
    out = []
    for p in range(prompt, len(ids)):
        every = list(range(rows))
        slots, qslots = cache.where([True] * rows)
        where = Where(torch.tensor(slots), torch.tensor(qslots), torch.full((rows,), p))
        out.append(decoder.decode(torch.full((rows,), ids[p]), torch.full((rows,), p), cache, where))
        if after_write is not None:
            after_write(p)
        cache.advance(every, every)
    return out


def test_the_memory_model_reads_each_policys_own_facts():
    spec = resolve_spec("Qwen/Qwen3-0.6B")
    for name, cls in POLICIES.items():
        policy, parsed = cls(budget=300), KVPolicy.parse(f"{name}:300")
        assert parsed.slack == policy.buffer == 128
        queries = (
            spec.num_layers * spec.num_heads * (policy.window + 1) * spec.head_dim * 2 if policy.window else 0
        )
        scores = spec.num_layers * spec.num_kv_heads * 400 * 4 if policy.accumulates else 0
        assert parsed.state_bytes(spec, 400) == queries + scores
    assert [n for n, c in POLICIES.items() if c.accumulates] == ["h2o"]
    assert {n: c.window for n, c in POLICIES.items()} == {"streaming": 0, "rkv": 8, "h2o": 128, "snapkv": 32}
    assert POLICIES["streaming"](budget=64).sinks == 4
    with pytest.raises(ValueError, match="budget above"):
        POLICIES["snapkv"](budget=20)


@pytest.mark.parametrize("name", EVICTIONS)
def test_budget_above_the_sequence_equals_full(qwen, name):
    full = run(qwen, "full", budgets=(20, 40))
    evict = run(qwen, f"{name}:200", budgets=(20, 40))
    assert [s.token_ids for s in evict] == [s.token_ids for s in full]
    assert [s.answers for s in evict] == [s.answers for s in full]


def test_streaming_keeps_sinks_and_the_newest_tokens(qwen):
    decoder = qwen.model
    ids = torch.randint(4, 300, (420,), generator=torch.Generator().manual_seed(0)).tolist()
    cache = decoder.new_cache(2, len(ids), "streaming:40", track_positions=True)
    seen = []

    def check(p):
        fill = cache.fill[0] + 1  # the slot just written counts
        for layer in range(len(decoder.layers)):
            kept = cache.positions[layer][:, :, :fill]
            expected = list(range(4)) + list(range(p + 1 - (fill - 4), p + 1))
            assert (kept == torch.tensor(expected, dtype=torch.int32)).all(), p
        seen.append(fill)

    step_through(decoder, cache, ids, 10, rows=2, after_write=check)
    assert max(seen) == 40 + 128 and min(seen[200:]) == 41  # compacted, every 128 tokens


class MaskedFullCache:
    """Reference for eviction: a plain full cache (slot = position) whose attention sees, per layer,
    row and KV head, only the positions in `visible[layer]` [G, H_kv, C] (bool). Independent of the
    policy code: plain softmax attention."""

    def __init__(self, decoder, rows, capacity):
        s = decoder.spec
        shape = (rows, s.num_kv_heads, capacity, s.head_dim)
        self.k = [torch.zeros(shape) for _ in decoder.layers]
        self.v = [torch.zeros(shape) for _ in decoder.layers]
        self.visible = [torch.zeros(rows, s.num_kv_heads, capacity, dtype=torch.bool) for _ in decoder.layers]

    def layer_buffers(self, layer):
        return self.k[layer], self.v[layer], self.visible[layer]

    @staticmethod
    def decode_op(buffers, q, k, v, where, scale):
        k_buf, v_buf, visible = buffers
        pos = where.positions
        rows = torch.arange(q.shape[0])
        k_buf[rows, :, pos], v_buf[rows, :, pos] = k[:, :, 0], v[:, :, 0]
        rep = q.shape[1] // k_buf.shape[1]
        keys, values = k_buf.repeat_interleave(rep, 1), v_buf.repeat_interleave(rep, 1)
        scores = (q @ keys.transpose(-1, -2)) * scale  # [G, H, 1, C]
        scores = scores.masked_fill(~visible.repeat_interleave(rep, 1)[:, :, None, :], float("-inf"))
        return scores.softmax(-1) @ values


@pytest.mark.parametrize("name", EVICTIONS)
def test_eviction_equals_full_attention_with_the_evicted_positions_masked(qwen, name):
    decoder = qwen.model
    ids = torch.randint(4, 300, (330,), generator=torch.Generator().manual_seed(1)).tolist()
    prompt, rows = 12, 2
    cache = decoder.new_cache(rows, len(ids), f"{name}:48", track_positions=True)
    ref = MaskedFullCache(decoder, rows, len(ids))
    for layer in range(len(decoder.layers)):
        ref.visible[layer][:, :, :prompt] = True
    decoder.prefill(torch.tensor(ids[:prompt]), cache)
    for layer in range(len(decoder.layers)):  # the reference's prompt KV, computed in full
        ref_keys, ref_values = cache.store.read(layer, torch.arange(rows), prompt)
        ref.k[layer][:, :, :prompt], ref.v[layer][:, :, :prompt] = ref_keys, ref_values
    compactions, worst = 0, 0.0
    for p in range(prompt, len(ids)):
        slots, qslots = cache.where([True] * rows)
        where = Where(torch.tensor(slots), torch.tensor(qslots), torch.full((rows,), p))
        ids_t, pos_t = torch.full((rows,), ids[p]), torch.full((rows,), p)
        ours = decoder.decode(ids_t, pos_t, cache, where)
        for layer in range(len(decoder.layers)):
            kept = cache.positions[layer][:, :, : slots[0] + 1].long()  # [G, H_kv, n] positions
            ref.visible[layer].zero_()
            ref.visible[layer].scatter_(2, kept, True)
        reference = decoder.decode(ids_t, pos_t, ref, Where(pos_t, pos_t, pos_t))
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        worst = max(worst, (ours - reference).abs().max().item())
        before = cache.fill[0]
        cache.advance(list(range(rows)), list(range(rows)))
        compactions += cache.fill[0] < before
    assert compactions >= 2  # the comparison covered states after compactions


@pytest.mark.parametrize("kv", ["rkv:24", "h2o:24", "snapkv:40", "streaming:24+quant:4"])
def test_rows_evict_independently_and_checkpoints_equal_separate_runs(qwen, kv):
    budgets = (90, 180)
    together = run(qwen, kv, budgets=budgets, samples=3)
    for i in (0, 2):
        [alone] = run(qwen, kv, budgets=budgets, samples=1, first_sample=i)
        assert alone.token_ids == together[i].token_ids and alone.answers == together[i].answers
    for budget in budgets:
        separate = run(qwen, kv, budgets=(budget,), samples=3)
        assert [s.answers[budget] for s in separate] == [s.answers[budget] for s in together]
    assert [s.token_ids for s in run(qwen, "full", budgets=budgets)] != [s.token_ids for s in together]


@pytest.mark.parametrize("kv", ["rkv:24", "h2o:24+quant:8", "streaming:16"])
def test_the_cap_holds_at_every_step(qwen, kv):
    config = GenerationConfig(budgets=(60, 200), samples=2, answer_tokens=5, answer_prefix="w7", kv=kv)
    policy = KVPolicy.parse(kv)
    fills = []
    qwen.on_step = lambda rows: fills.append(max(qwen.cache.fill))
    try:
        qwen.generate(list(range(4, 160)), config)  # the prompt alone is past the budget
    finally:
        qwen.on_step = None
    cap = policy.budget + policy.slack + qwen.answer_slots(config)
    assert max(fills) <= cap and qwen.cache.capacity == cap
    assert min(fills) <= policy.budget + 1  # and it was reached and compacted


@pytest.mark.parametrize(
    "kv",
    [
        "full",
        "quant:8",
        "quant:4",
        "quant:2",
        "streaming:16",
        "rkv:16",
        "h2o:16",
        "snapkv:40",
        "rkv:16+quant:4",
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cache_bytes_equal_accounted_bytes(kv, dtype):
    model = tiny_model("llama", dtype=dtype, hidden_size=128, num_attention_heads=2, num_key_value_heads=1)
    decoder = decoder_of(model)
    for tokens in (100, 300):
        cache = decoder.new_cache(3, tokens, kv, answer_slots=20)
        allocated = sum(t.numel() * t.element_size() for obj in (cache.store, cache) for t in _tensors(obj))
        assert cache.nbytes == allocated
        element = torch.tensor([], dtype=dtype).element_size()
        assert cache.nbytes == kv_bytes(decoder.spec, KVPolicy.parse(kv), tokens, 3, element, answer_slots=20)


def _tensors(obj):
    """Every tensor an object holds in its attributes (lists included), but not shared index vectors
    and not the attention kernel's tickets (4 bytes per row and KV head: the engine workspace term)."""
    out = []
    for name, value in vars(obj).items():
        if name in ("rows", "store", "positions", "tickets"):
            continue
        items = value if isinstance(value, list) else [value]
        out += [t for t in items if isinstance(t, torch.Tensor)]
    return out


def test_quant_shrinks_memory():
    spec = ModelSpec.from_config(
        tiny_model("llama", hidden_size=128, num_attention_heads=2, num_key_value_heads=1).config.to_dict()
    )
    full = kv_bytes(spec, KVPolicy(), 4096)
    assert kv_bytes(spec, KVPolicy(bits=8), 4096) < 0.6 * full
    assert kv_bytes(spec, KVPolicy(bits=4), 4096) < 0.35 * full


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_round_trip(bits):
    x = torch.randn(3, 2, 5, 128) * 3
    codes, scale, zero = quantize(x, bits)
    assert codes.dtype == torch.uint8 and codes.shape[-1] == 128 * bits // 8 and scale.shape[-1] == 2
    assert torch.equal(unpack(pack(unpack(codes, bits), bits), bits), unpack(codes, bits))
    back = dequantize(codes, scale, zero, bits, torch.float32)
    step = scale.float().repeat_interleave(64, -1)
    assert ((back - x).abs() <= step * 0.5 + 1e-2 * step + 1e-3).all()


def test_quant8_logits_on_smollm2_stay_within_one_percent(smollm2_fp32):
    """Relative error of all decode-step logits together (Frobenius norm), teacher-forced on 280 tokens
    of MATH-500 text; the worst single step is reported in bench/RESULTS.md in git history (about 2 %)."""
    import json

    from membudget.tasks.base import BUNDLED

    decoder, tok = smollm2_fp32.decoder, smollm2_fp32.tokenizer
    rows = [json.loads(line) for line in (BUNDLED / "math500.jsonl").read_text().splitlines()[:12]]
    ids = tok.encode("\n\n".join(r["problem"] + " " + r["solution"] for r in rows))[:300]
    full = torch.stack(step_through(decoder, decoder.new_cache(1, len(ids)), ids, 20))
    quant = torch.stack(step_through(decoder, decoder.new_cache(1, len(ids), "quant:8"), ids, 20))
    error = ((quant - full).norm() / full.norm()).item()
    assert error < 1e-2, error
    assert (quant.argmax(-1) == full.argmax(-1)).float().mean() >= 0.98
    late = quant[150:] - full[150:]
    assert late.abs().max() > 0  # past the 128-token ring, codes are really read


def test_quant_needs_a_head_dim_multiple_of_64(qwen):
    decoder = decoder_of(tiny_model("llama"))  # head_dim 16
    with pytest.raises(ValueError, match="multiple of 64"):
        decoder.new_cache(1, 10, "quant:8")
    with pytest.raises(ValueError, match="malformed KV policy"):
        GenerationConfig(kv="rkv")


@pytest.mark.parametrize("kv", ["full", "rkv:24", "h2o:24+quant:8", "quant:4"])
def test_prompts_batched_together_equal_each_alone(qwen, kv):
    prompts = [PROMPT, [1, 20, 21], list(range(30, 60))]  # the last one past rkv's budget already
    config = GenerationConfig(
        budgets=(40, 90), samples=2, answer_tokens=5, answer_prefix="w7 w8", sampling=SAMPLING, kv=kv
    )
    together = qwen.generate_batch(prompts, config, seeds=[11, 12, 13])
    for prompt, seed, batch in zip(prompts, (11, 12, 13), together, strict=True):
        alone = qwen.generate(prompt, dataclasses.replace(config, seed=seed))
        assert [s.token_ids for s in alone] == [s.token_ids for s in batch]
        assert [s.answers for s in alone] == [s.answers for s in batch]


@pytest.mark.parametrize("kv", ["quant:4", "rkv:27+quant:4"])  # (capacities that are multiples of 4)
def test_value_codes_grouped_by_four_slots_change_nothing(qwen, kv, monkeypatch):
    """The CUDA store's value-code layout (4 slots per byte column, engine/kvquant.py) forced on the
    CPU: prefill, decode writes, reads and compactions give the same generations as slot-major codes."""
    from membudget.engine import kvstore

    plain = run(qwen, kv, budgets=(90, 180))
    grouped = []
    monkeypatch.setattr(
        kvstore, "grouped_values", lambda device, bits, capacity, *_: grouped.append(1) or capacity % 4 == 0
    )
    assert [s.token_ids for s in run(qwen, kv, budgets=(90, 180))] == [s.token_ids for s in plain]
    assert grouped and qwen.cache.store.grouped and qwen.cache.store.vc[0].dim() == 5


def test_a_generation_releases_the_last_ones_cache_before_allocating(qwen, monkeypatch):
    """Otherwise every generation after the first holds two caches at its peak (seen on a GPU: the
    recorded peaks of a sweep's later generations were 1.3-2.0x their accounting)."""
    import weakref

    config = GenerationConfig(budgets=(8,), samples=2, answer_tokens=2, answer_prefix="w7", kv="quant:8")
    qwen.generate(list(range(4, 20)), config)
    last = weakref.ref(qwen.cache)
    alive = []
    new_cache = qwen.model.new_cache

    def allocate(*args, **kwargs):
        alive.append(last() is not None)
        return new_cache(*args, **kwargs)

    monkeypatch.setattr(qwen.model, "new_cache", allocate)
    qwen.generate(list(range(4, 20)), dataclasses.replace(config, kv="full"))
    assert alive == [False]
