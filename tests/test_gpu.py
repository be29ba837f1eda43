"""The GPU kernels at every head size the registry's models use (64: SmolLM2; 128: Qwen3, R1-Distill),
against the torch reference paths the CPU runs. Skipped without CUDA; run on a GPU machine with
`python -m pytest tests/test_gpu.py` (the acceptance run does: bench/gpu_acceptance.py).

Checked per head size: the quantized-cache decode (its Triton write of the new token's codes and its
attention, 8/4/2 bits) step by step against the chunked reference on a CPU twin of the store, codes
byte for byte; the dense decode attention; compaction of dense and quantized stores; R-KV's
newest-near-duplicate search; and the int8/int4 weight products at the models' matrix shapes.
"""

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

HEAD_DIMS = (64, 128)
GROUPS = [(9, 3), (16, 8)]  # (query heads, KV heads): SmolLM2's 3 per group, Qwen3-8B's 2


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("heads, kv_heads", GROUPS)
def test_quantized_decode_matches_the_reference(head_dim, bits, heads, kv_heads):
    from membudget.engine.kvstore import QuantStore

    torch.manual_seed(head_dim + bits)
    rows, capacity, steps, scale = 3, 320, 300, head_dim**-0.5
    gpu = QuantStore(1, rows, kv_heads, capacity, head_dim, torch.bfloat16, "cuda", bits, heads)
    cpu = QuantStore(1, rows, kv_heads, capacity, head_dim, torch.bfloat16, "cpu", bits, heads, gpu.grouped)
    worst = 0.0
    for step in range(steps):
        q = torch.randn(rows, heads, 1, head_dim, dtype=torch.bfloat16)
        k = torch.randn(rows, kv_heads, 1, head_dim, dtype=torch.bfloat16) * 2
        v = torch.randn(rows, kv_heads, 1, head_dim, dtype=torch.bfloat16)
        slots = torch.full((rows,), step)
        out_gpu = gpu.decode_op(
            gpu.layer_buffers(0), q.cuda(), k.cuda(), v.cuda(), slots.cuda(), slots.cuda() + 1, scale
        )
        out_cpu = cpu.decode_op(cpu.layer_buffers(0), q, k, v, slots, slots + 1, scale)
        worst = max(worst, relative(out_gpu.cpu(), out_cpu))
    assert worst < 2e-2, worst  # bf16 probabilities times values, against an fp32 reference
    for a, b in zip(gpu.layer_buffers(0)[:8], cpu.layer_buffers(0)[:8], strict=True):
        assert torch.equal(a.cpu(), b), "the kernel's codes, scales or ring differ from kvquant.quantize"


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("heads, kv_heads", GROUPS)
def test_dense_decode_matches_the_reference(head_dim, heads, kv_heads):
    from membudget.engine.attention import decode_attention_reference
    from membudget.engine.kvstore import DenseStore

    torch.manual_seed(head_dim)
    rows, capacity = 4, 700
    store = DenseStore(1, rows, kv_heads, capacity, head_dim, torch.bfloat16, "cuda")
    store.k[0].normal_()
    store.v[0].normal_()
    q = torch.randn(rows, heads, 1, head_dim, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(rows, kv_heads, 1, head_dim, dtype=torch.bfloat16, device="cuda")
    slots = torch.tensor([0, 130, 511, 698], device="cuda")
    out = store.decode_op(store.layer_buffers(0), q, k, k, slots, slots + 1, head_dim**-0.5)
    ref = decode_attention_reference(
        q.float(), store.k[0].float(), store.v[0].float(), slots + 1, head_dim**-0.5
    )
    assert relative(out, ref) < 1e-2


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("kind", ["dense", "quant"])
def test_compaction_equals_the_cpu(head_dim, kind):
    from membudget.engine.kvstore import DenseStore, QuantStore

    torch.manual_seed(1)
    rows, kv_heads, capacity, end, budget = 3, 2, 400, 384, 200

    def make(device):
        if kind == "dense":
            return DenseStore(1, rows, kv_heads, capacity, head_dim, torch.bfloat16, device)
        return QuantStore(1, rows, kv_heads, capacity, head_dim, torch.bfloat16, device, 4, 4, grouped=True)

    gpu, cpu = make("cuda"), make("cpu")
    for name in ("k", "v") if kind == "dense" else ("kc", "vc", "ks", "kz", "vs", "vz", "kr", "vr"):
        for a, b in zip(getattr(gpu, name), getattr(cpu, name), strict=True):
            fill = torch.randint(0, 255, a.shape) if a.dtype == torch.uint8 else torch.randn(a.shape)
            b.copy_(fill.to(b.dtype))
            a.copy_(b)
    index = torch.stack([torch.randperm(end)[:budget].sort().values for _ in range(rows * kv_heads)])
    index = index.reshape(rows, kv_heads, budget)
    which = torch.tensor([0, 2])  # a subset of rows
    gpu.keep(0, which.cuda(), index[which].cuda(), end)
    cpu.keep(0, which, index[which], end)
    for a, b in zip(gpu.layer_buffers(0), cpu.layer_buffers(0), strict=False):
        if isinstance(a, torch.Tensor) and a.dtype != torch.int32:
            assert torch.equal(a.cpu(), b), kind


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_newest_near_duplicates_on_the_gpu(head_dim):
    from membudget.engine.kernels.similarity import last_twins
    from membudget.engine.policies.rkv import last_twins_reference

    torch.manual_seed(head_dim)
    keys = torch.randn(16, 1200, head_dim)
    keys[:, 600:700] = keys[:, 100:200] + 0.05 * torch.randn(16, 100, head_dim)
    unit = torch.nn.functional.normalize(keys, dim=-1).bfloat16().cuda()
    index, sim = last_twins(unit, 0.5)
    ref_index, ref_sim = last_twins_reference(unit.float(), 0.5)
    agree = (index == ref_index).float().mean().item()
    assert agree > 0.999, agree  # bf16 products may fall either side of the threshold, rarely
    same = index == ref_index
    assert torch.allclose(sim[same], ref_sim[same], atol=1e-2)
    assert (index[:, 100:200] >= 600).all()


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize(
    "n, k", [(576, 576), (1536, 576), (576, 1536), (4096, 4096), (12288, 4096), (1024, 3072)]
)
@pytest.mark.parametrize("rows", [1, 16])
def test_weight_products_at_model_shapes(bits, n, k, rows):
    """SmolLM2 (576 / 1536) and Qwen3 (1024 ... 12288) matrices: packed weights times x on the GPU
    against x times the dequantized weights in fp32."""
    from membudget.engine.linear import linear
    from membudget.engine.wquant import dequantize, quantize

    torch.manual_seed(n + k)
    w = quantize(torch.randn(n, k, dtype=torch.bfloat16, device="cuda") * 0.05, bits)
    x = torch.randn(rows, k, dtype=torch.bfloat16, device="cuda")
    ref = x.float() @ dequantize(w, torch.float32).T
    assert relative(linear(x, w), ref) < 1e-2


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_rkv_keeps_the_same_tokens_on_the_gpu(head_dim):
    """R-KV's kept sets from bf16 keys on the GPU (fused near-duplicate search) against fp32 on the CPU."""
    from membudget.engine.policies.rkv import RKV

    torch.manual_seed(head_dim)
    keys = torch.randn(2, 8, 640, head_dim)
    keys[:, :, 300:400] = keys[:, :, 100:200] + 0.3 * torch.randn(2, 8, 100, head_dim)
    queries = torch.randn(2, 16, 8, head_dim)
    policy = RKV(budget=160)
    cpu = policy.select(
        policy.score(keys.bfloat16().float(), queries.bfloat16().float(), None, head_dim**-0.5)
    )
    gpu = policy.select(policy.score(keys.bfloat16().cuda(), queries.bfloat16().cuda(), None, head_dim**-0.5))
    a, b = cpu.flatten(0, 1).tolist(), gpu.cpu().flatten(0, 1).tolist()
    jaccard = sum(len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(a, b, strict=True)) / len(a)
    assert jaccard > 0.95, jaccard
