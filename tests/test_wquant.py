"""Weight-only int8/int4: exact packing, bounded rounding error, bytes as accounted, quality on SmolLM2."""

import pytest
import torch

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


def test_torch_int4_tiles_multiply_like_the_reference():
    """The 4-bit weights re-packed for torch's int4 kernel (CUDA: engine/torch_int4.py) give the reference
    product up to rounding the fp16 scale to bf16; checked here with the CPU variant of the same op."""
    from membudget.engine.torch_int4 import eligible, linear, to_tiles

    torch.manual_seed(0)
    w = quantize(torch.randn(32, 384) * 0.05, 4)
    assert eligible(w, torch.bfloat16)
    assert not eligible(w, torch.float32) and not eligible(quantize(torch.randn(24, 320), 4), torch.bfloat16)
    tiles = to_tiles(w)
    assert tiles.nbytes == w.nbytes  # the same bytes as accounted: codes, fp16 scales, 4-bit zeros
    x = torch.randn(3, 384).bfloat16()
    ref = x.double() @ dequantize(w, torch.float64).T
    out = linear(x, tiles)
    assert out.shape == (3, 32) and out.dtype == torch.bfloat16
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-2
