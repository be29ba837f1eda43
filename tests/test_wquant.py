"""Weight-only int8/int4: exact packing, bounded rounding error, bytes as accounted, quality on SmolLM2."""

import pytest
import torch

from membudget.engine.kernels.gemv import add_splits
from membudget.engine.wquant import GROUP, dequantize, pack4, quantize, unpack4, unpacked
from membudget.memory import weight_bytes

from .conftest import tiny_model
from .test_engine import TYPES, decoder_of


def test_pack4_round_trips_odd_lengths():
    values = torch.randint(0, 16, (37,), dtype=torch.uint8)
    packed = pack4(values)
    assert packed.numel() == 19 and torch.equal(unpack4(packed, 37), values)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(
    "shape", [(64, 256), (48, 576), (30, 100)]
)  # K a multiple of 128, 4.5 groups, < 1 group
def test_rounding_error_is_at_most_half_a_step(bits, shape):
    w = torch.randn(*shape) * 0.05
    w[0, :5] = 0.3  # an outlier group
    qw = quantize(w, bits)
    n, k = shape
    groups = -(-k // GROUP)
    assert qw.scales.shape == (n, groups) and qw.scales.dtype == torch.float16
    q, zeros = unpacked(qw)
    assert q.shape == (n, k) and int(q.max()) < 2**bits and zeros.shape == (n, groups)
    step = qw.scales.float().repeat_interleave(GROUP, dim=1)[:, :k]
    err = (dequantize(qw) - w).abs()
    assert bool((err <= step / 2 + 1e-6).all())
    # the layout holds exactly the accounted bytes: packed values, 16-bit scales, b-bit zeros
    assert qw.nbytes == -(-n * k * bits // 8) + 2 * n * groups + -(-n * groups * bits // 8)


def test_split_sums_add_left_to_right():
    # the order is part of the contract: the same bits in eager and compiled steps, on every run
    partial = torch.randn(7, 3, 33) * torch.exp2(torch.randint(-20, 20, (7, 3, 33)).float())
    expected = partial[0].clone()
    for part in partial[1:]:
        expected += part
    total = add_splits(partial)
    assert total.shape == (3, 33)
    assert torch.equal(total, expected)
    assert torch.allclose(
        total.double(), partial.double().sum(0), rtol=1e-5, atol=1e-5 * partial.abs().max().item()
    )
    assert torch.equal(add_splits(partial[:1]), partial[0])


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("model_type", TYPES)
def test_quantized_engine_allocates_what_memory_accounts(model_type, bits):
    decoder = decoder_of(tiny_model(model_type, dtype=torch.bfloat16))
    decoder.quantize_(bits)
    assert decoder.weight_bytes == weight_bytes(decoder.spec, bits)
    logits = decoder.decode(torch.tensor([5, 6]), torch.tensor([0, 0]), decoder.new_cache(2, 4))
    assert logits.shape == (2, 300) and torch.isfinite(logits).all()
    # the CPU's once-dequantized matrices give exactly what the per-step reference kernel gives
    assert decoder.compute_layers is not decoder.layers
    decoder.compute_layers = decoder.layers  # the reference: dequantize inside every linear()
    again = decoder.decode(torch.tensor([5, 6]), torch.tensor([0, 0]), decoder.new_cache(2, 4))
    assert torch.equal(logits, again)


@pytest.mark.parametrize("bits", [16, 8])
def test_loading_quantizes_layer_by_layer_like_quantizing_after(bits):
    """from_hf(..., bits) (what load_model does: move and quantize one layer at a time) gives the same
    decoder as from_hf then quantize_, takes the module's copies, and keeps a tied head tied."""
    import copy

    from membudget.engine.model import Decoder
    from membudget.spec import ModelSpec

    model = tiny_model("qwen3", dtype=torch.bfloat16)
    spec = ModelSpec.from_config(model.config.to_dict())
    at_load = Decoder.from_hf(copy.deepcopy(model), spec, device="cpu", bits=bits)
    after = Decoder.from_hf(copy.deepcopy(model), spec)
    after.quantize_(bits)
    assert at_load.weight_bytes == after.weight_bytes == weight_bytes(spec, bits)
    ids, positions = torch.tensor([5, 6]), torch.tensor([0, 0])
    assert torch.equal(
        at_load.decode(ids, positions, at_load.new_cache(2, 4)),
        after.decode(ids, positions, after.new_cache(2, 4)),
    )
    taken = copy.deepcopy(model)
    Decoder.from_hf(taken, spec, bits=bits)
    assert all(layer.mlp.down_proj.weight is None for layer in taken.model.layers)
    tied = tiny_model("llama", dtype=torch.bfloat16, tie_word_embeddings=True)
    decoder = Decoder.from_hf(tied, ModelSpec.from_config(tied.config.to_dict()), bits=bits)
    assert decoder.lm_head is decoder.embed


TEXT = (
    "The quick brown fox jumps over the lazy dog. Scientists have discovered that the ocean covers more "
    "than seventy percent of the surface of the Earth, and that most of it remains unexplored. In the "
    "morning, the children walked to school and talked about the stories they had read the night before."
)


def test_smollm2_int8_tracks_bf16_and_int4_stays_fluent(smollm2_fp32):
    from membudget.engine.load import load_model

    tok = smollm2_fp32.tokenizer
    ids = torch.tensor(tok.encode(TEXT))

    def stats(decoder):
        logits = decoder.token_logits(ids)
        ppl = float(torch.exp(torch.nn.functional.cross_entropy(logits[:-1], ids[1:])))
        return ppl, logits.argmax(-1)

    ppl16, top16 = stats(smollm2_fp32.decoder)
    ppl8, top8 = stats(load_model("smollm2", dtype="float32", weights=8).decoder)
    ppl4, top4 = stats(load_model("smollm2", dtype="float32", weights=4).decoder)
    agree8 = float((top8 == top16).float().mean())
    print(f"perplexity bf16 {ppl16:.2f}, int8 {ppl8:.2f}, int4 {ppl4:.2f}; int8 top-1 agreement {agree8:.3f}")
    assert abs(ppl8 / ppl16 - 1) < 0.02 and agree8 >= 0.95
    assert ppl4 < 2 * ppl16


# Short questions for the greedy-answer comparison (fixed; SmolLM2 answers most in a sentence).
QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is 12 times 12?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Give a synonym for happy.",
    "What planet is known as the Red Planet?",
    "Translate 'thank you' into Spanish.",
    "What is the largest ocean on Earth?",
    "How many days are in a leap year?",
    "What gas do plants absorb?",
    "What is the square root of 81?",
    "Name a mammal that can fly.",
    "What is the chemical symbol for gold?",
    "Who painted the Mona Lisa?",
    "What is the freezing point of water in Fahrenheit?",
    "How many continents are there?",
    "What is the opposite of cold?",
    "What language is spoken in Brazil?",
    "What is 7 plus 8?",
    "Which animal is known as the king of the jungle?",
    "What is the tallest mountain in the world?",
    "How many hours are in a day?",
    "What color is the sky on a clear day?",
    "What is the capital of Japan?",
    "Name a fruit that is yellow.",
    "What do bees make?",
    "How many sides does a hexagon have?",
    "What is the main ingredient of guacamole?",
    "Who was the first person to walk on the Moon?",
    "What is the largest planet in our solar system?",
    "What is H2O commonly called?",
    "How many minutes are in an hour?",
    "What is the currency of the United Kingdom?",
    "Name an instrument with keys.",
    "What is 100 divided by 4?",
    "Which season comes after winter?",
    "What is the fastest land animal?",
    "What is the capital of Italy?",
]


def greedy_answers(loaded, new_tokens: int = 16) -> list[list[int]]:
    """Greedy continuations of every question (chat template), all in one batch, each cut after EOS."""
    tok, decoder = loaded.tokenizer, loaded.decoder
    prompts = [
        tok.encode(
            tok.apply_chat_template(
                [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
            )
        )
        for q in QUESTIONS
    ]
    cache = decoder.new_cache(len(prompts), max(map(len, prompts)) + new_tokens)
    logits = torch.stack(
        [decoder.prefill(torch.tensor(p), cache, rows=slice(i, i + 1)) for i, p in enumerate(prompts)]
    )
    positions, out = torch.tensor([len(p) for p in prompts]), []
    for _ in range(new_tokens):
        out.append(logits.argmax(-1))
        logits = decoder.decode(out[-1], positions, cache)
        positions = positions + 1
    rows = torch.stack(out, 1).tolist()
    return [r[: r.index(tok.eos_token_id) + 1] if tok.eos_token_id in r else r for r in rows]


def test_smollm2_int8_greedy_answers_match_as_often_as_bf16_arithmetic(smollm2_fp32):
    """Greedy answers (16 tokens) to 40 short questions, weights 8/4 bits vs the 16-bit checkpoint, all in
    fp32 arithmetic so that only the weights differ. Measured: int8 25/40 identical, int4 1/40; computing
    the 16-bit model in bf16 instead of fp32 changes as many (24/40 identical): SmolLM2-135M's greedy
    continuations flip at near-ties under any perturbation of that size. The issue's >= 95 % is not
    reachable by a weight format on this model (bench/RESULTS.md in git history); this test guards what is measured."""
    from membudget.engine.load import load_model

    reference = greedy_answers(smollm2_fp32)
    same = {}
    for bits in (8, 4):
        answers = greedy_answers(load_model("smollm2", dtype="float32", weights=bits))
        same[bits] = sum(a == b for a, b in zip(answers, reference, strict=True))
    print(f"identical greedy answers of {len(QUESTIONS)}: int8 {same[8]}, int4 {same[4]}")
    assert same[8] >= 22 and same[4] < same[8]
