"""Engine parity with transformers, reproducibility, batching and budget checkpoints (CPU, fp32)."""

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from membudget.engine.compiling import compiled
from membudget.engine.generate import GenerationConfig, Generator
from membudget.engine.layer import attention_inputs, attention_output_and_mlp
from membudget.engine.model import Decoder, decode_logits
from membudget.engine.sampling import SamplingParams
from membudget.spec import ModelSpec

from .conftest import THINK_CLOSE, tiny_model, tiny_tokenizer

TYPES = ["llama", "qwen2", "qwen3"]


def decoder_of(model) -> Decoder:
    """A Decoder on a copy of `model` (from_hf takes the weights; the reference keeps its own)."""
    return Decoder.from_hf(copy.deepcopy(model), ModelSpec.from_config(model.config.to_dict()))


def greedy_tokens(decoder: Decoder, prompt: torch.Tensor, steps: int, rows: int = 1) -> list[int]:
    cache = decoder.new_cache(rows, prompt.shape[0] + steps + 1)
    tokens = [int(decoder.prefill(prompt, cache).argmax())]
    position = prompt.shape[0]
    while len(tokens) < steps:
        ids = torch.full((rows,), tokens[-1])
        logits = decoder.decode(ids, torch.full((rows,), position), cache)
        assert torch.equal(logits[0], logits[-1])  # every row sees the same prompt and tokens
        tokens.append(int(logits[0].argmax()))
        position += 1
    return tokens


@pytest.mark.parametrize("model_type", TYPES)
def test_greedy_tokens_equal_transformers(model_type):
    model = tiny_model(model_type)
    prompt = torch.randint(4, 300, (9,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.generate(
            prompt[None], max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0
        )[0, 9:].tolist()
    assert greedy_tokens(decoder_of(model), prompt, 64, rows=2) == ref


@pytest.mark.parametrize("model_type", TYPES)
def test_logits_match_transformers_at_every_step(model_type):
    model = tiny_model(model_type)
    decoder = decoder_of(model)
    ids = torch.randint(4, 300, (24,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(ids[None]).logits[0]  # [24, V]
    cache = decoder.new_cache(1, 32)
    torch.testing.assert_close(decoder.prefill(ids[:10], cache), ref[9], rtol=1e-4, atol=1e-4)
    for p in range(10, 24):
        logits = decoder.decode(ids[p : p + 1], torch.tensor([p]), cache)[0]
        torch.testing.assert_close(logits, ref[p], rtol=1e-4, atol=1e-4)


def test_compiled_layer_parts_match_eager():
    # the options `compiled` hands torch.compile (programmatic dependent launch among them) must be
    # valid for the pinned torch; on the CPU Inductor compiles the same graphs to C++ (the CPU cache's
    # reference attention is data-dependent, so the whole decode layer compiles on CUDA only)
    decoder = decoder_of(tiny_model("qwen3"))
    w, shape = decoder.layers[0], decoder.shape
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, decoder.spec.hidden_size, generator=gen)
    attn = torch.randn(2, shape.heads, 1, shape.head_dim, generator=gen)
    decoder.new_cache(1, 8)  # builds the RoPE table
    positions = torch.tensor([3, 5])
    cos, sin = decoder.cos[positions][:, None], decoder.sin[positions][:, None]  # [2, 1, D]
    q, k, v = attention_inputs(x, cos, sin, w, shape)
    torch.testing.assert_close(compiled(attention_inputs)(x, cos, sin, w, shape), (q, k, v))
    out = attention_output_and_mlp(x, attn, w, shape)
    torch.testing.assert_close(compiled(attention_output_and_mlp)(x, attn, w, shape), out)
    act = torch.randn(2, decoder.spec.intermediate_size, generator=gen)
    args = (x[:, 0], act, w.down, decoder.norm, decoder.lm_head, decoder.eps)
    torch.testing.assert_close(compiled(decode_logits)(*args), decode_logits(*args))


def test_prefill_chunks_are_causal():
    decoder = decoder_of(tiny_model("qwen3"))
    ids = torch.randint(4, 300, (23,), generator=torch.Generator().manual_seed(3))
    whole, chunked = decoder.new_cache(2, 32), decoder.new_cache(2, 32)
    a = decoder.prefill(ids, whole)
    b = decoder.prefill(ids, chunked, chunk=7)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for layer in range(len(decoder.layers)):
        torch.testing.assert_close(
            whole.store.k[layer][:, :, :23], chunked.store.k[layer][:, :, :23], rtol=1e-5, atol=1e-5
        )
    # changing a later token leaves the cache of earlier tokens unchanged
    other = ids.clone()
    other[15:] = 4
    changed = decoder.new_cache(1, 32)
    decoder.prefill(other, changed, chunk=7)
    for layer in range(len(decoder.layers)):
        torch.testing.assert_close(
            changed.store.k[layer][0, :, :15], chunked.store.k[layer][0, :, :15], rtol=1e-5, atol=1e-5
        )


@pytest.fixture(scope="module")
def thinker():
    """A tiny Qwen3 whose </think> comes up often, with a word-level tokenizer that knows it."""
    return Generator(decoder_of(tiny_model("qwen3", seed=5, boost={THINK_CLOSE: 2.5})), tiny_tokenizer())


PROMPT = [1, 10, 11, 12, 13]
SAMPLING = SamplingParams(temperature=1.0, top_p=0.9, top_k=50)


def run(gen, **kwargs):
    fields = dict(budgets=(24,), samples=4, answer_tokens=6, answer_prefix="w7 w8", sampling=SAMPLING, seed=7)
    return gen.generate(PROMPT, GenerationConfig(**(fields | kwargs)))


def test_sampling_is_reproducible_by_seed(thinker):
    a, b, c = run(thinker), run(thinker), run(thinker, seed=8)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.token_ids for s in a] != [s.token_ids for s in c]
    assert len({tuple(s.token_ids) for s in a}) > 1  # rows differ


@pytest.mark.parametrize("forcing", [True, False])
def test_row_of_a_batch_equals_the_sample_alone(thinker, forcing):
    batch = run(thinker, samples=4, budget_forcing=forcing)
    for i in (1, 3):
        [alone] = run(thinker, samples=1, first_sample=i, budget_forcing=forcing)
        assert alone.token_ids == batch[i].token_ids and alone.answers == batch[i].answers


def test_budget_forcing_replaces_early_ends_with_wait(thinker):
    forced = run(thinker, samples=6)
    free = run(thinker, samples=6, budget_forcing=False)
    tok = thinker.tokenizer
    wait = tok.convert_tokens_to_ids("Wait")
    for s in forced:
        thinking = s.token_ids[:24]
        assert THINK_CLOSE not in thinking and s.finish_reason == "budget"
        assert s.token_ids[24] == THINK_CLOSE  # the forced close, then the answer prefix
        assert tok.decode(s.token_ids[25:27]) == "w7 w8"
        assert s.answers[24].startswith("</think>")
    assert any(wait in s.token_ids[:24] for s in forced), "the boosted </think> should have been replaced"
    assert any(s.finish_reason in ("eos", "answer_cap") for s in free), (
        "some row should end its thinking itself"
    )


@pytest.mark.parametrize("forcing", [True, False])
def test_budget_checkpoints_equal_separate_runs(thinker, forcing):
    budgets = (5, 12, 24)
    together = run(thinker, budgets=budgets, samples=5, budget_forcing=forcing)
    for budget in budgets:
        alone = run(thinker, budgets=(budget,), samples=5, budget_forcing=forcing)
        for a, t in zip(alone, together, strict=True):
            assert t.answers.get(budget) == a.answers.get(budget), budget
    final = run(thinker, budgets=(24,), samples=5, budget_forcing=forcing)
    assert [s.token_ids for s in final] == [s.token_ids for s in together]


def test_greedy_generator_matches_transformers(thinker):
    model = tiny_model("llama", seed=2)
    gen = Generator(decoder_of(model), tiny_tokenizer())
    config = GenerationConfig(
        budgets=(40,),
        samples=2,
        answer_tokens=4,
        answer_prefix="w9",
        sampling=SamplingParams(greedy=True),
        budget_forcing=False,
    )
    out = gen.generate(PROMPT, config)
    with torch.no_grad():
        ref = model.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=40,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=[0, THINK_CLOSE],
        )[0, len(PROMPT) :].tolist()
    n = min(len(ref), 40)
    assert out[0].token_ids[:n] == ref[:n] and out[1].token_ids == out[0].token_ids


def test_bad_configs():
    with pytest.raises(ValueError, match="increasing"):
        GenerationConfig(budgets=(10, 5))
    with pytest.raises(ValueError, match="positive"):
        GenerationConfig(budgets=(0,))
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=0)
    with pytest.raises(ValueError, match="top-p"):
        dataclasses.replace(SamplingParams(), top_p=0)


def hf_greedy(model, prompt: list[int], steps: int) -> list[int]:
    """Greedy decoding with transformers' own forward and its DynamicCache, one token at a time.

    (transformers 5.17's `generate()` on this model picks a different token at step 8 when
    max_new_tokens is 64 than when it is 10, so the reference is its plain incremental forward.)
    """
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        tokens = [int(out.logits[0, -1].argmax())]
        while len(tokens) < steps:
            out = model(torch.tensor([[tokens[-1]]]), past_key_values=out.past_key_values, use_cache=True)
            tokens.append(int(out.logits[0, -1].argmax()))
    return tokens


def test_smollm2_greedy_equals_transformers(smollm2_fp32):
    from transformers import AutoModelForCausalLM

    from membudget.tasks import chat_prompt

    tok = smollm2_fp32.tokenizer
    prompt = tok.encode(chat_prompt(tok, "What is 12 times 7? Answer briefly."), add_special_tokens=False)
    ref_model = AutoModelForCausalLM.from_pretrained(smollm2_fp32.source, dtype=torch.float32).eval()
    ref = hf_greedy(ref_model, prompt, 64)
    ours = greedy_tokens(smollm2_fp32.decoder, torch.tensor(prompt), 64)
    assert ours == ref
    assert tok.decode(ours).startswith("12 times 7 is")  # a real, trained model (it says 80)


@pytest.mark.parametrize("model_type", TYPES)
def test_engine_allocates_what_memory_accounts(model_type):
    from membudget.memory import KVPolicy, kv_bytes, weight_bytes

    model = tiny_model(model_type, dtype=torch.bfloat16)
    decoder = decoder_of(model)
    spec = decoder.spec
    assert decoder.weight_bytes == weight_bytes(spec, 16)
    cache = decoder.new_cache(rows=3, tokens=50)
    assert cache.nbytes == kv_bytes(spec, KVPolicy(), 50, samples=3)


def test_cpu_generation_needs_no_triton():
    """Triton is a dev extra (a CPU-only install may lack it): a sampled CPU generation must not import
    it -- the GPU kernels are imported only for CUDA tensors."""
    code = (
        "import sys; sys.modules['triton'] = None\n"  # any `import triton` now fails
        "from tests.conftest import tiny_model, tiny_tokenizer\n"
        "from tests.test_engine import PROMPT, SAMPLING, decoder_of\n"
        "from membudget.engine.generate import GenerationConfig, Generator\n"
        "gen = Generator(decoder_of(tiny_model('qwen3', seed=5)), tiny_tokenizer())\n"
        "out = gen.generate(PROMPT, GenerationConfig(budgets=(8,), samples=2, answer_tokens=3, sampling=SAMPLING))\n"
        "assert all(s.token_ids for s in out)\n"
        "print('generated without triton')\n"
    )
    root = Path(__file__).parent.parent
    env = dict(os.environ, PYTHONPATH=f"{root / 'src'}{os.pathsep}{root}")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "generated without triton" in done.stdout, done.stderr[-3000:]


def test_models_share_one_capture_stream_per_gpu(monkeypatch):
    """Every model of a process captures its steps on one stream per GPU: torch keeps a cuBLAS
    workspace per stream until the process ends, so a stream per model would add 32 MiB to every
    later peak-memory figure of a sweep (the GPU side: bench/decode.py's step_growth_bytes)."""
    from membudget.engine import model as model_module

    first, second, other = (decoder_of(tiny_model("qwen3", seed=s)) for s in (0, 1, 2))
    made = []
    monkeypatch.setattr(torch.cuda, "Stream", lambda index: made.append(index) or object())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(model_module, "CAPTURE_STREAMS", {})
    first.device, second.device, other.device = (
        torch.device("cuda"),
        torch.device("cuda", 0),
        torch.device("cuda", 1),
    )
    assert first.capture_stream() is second.capture_stream() is first.capture_stream()
    assert other.capture_stream() is not first.capture_stream()
    assert made == [0, 1]
