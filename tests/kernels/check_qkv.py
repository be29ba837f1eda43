"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): a layer's attention inputs of one row in
one kernel (engine/triton_qkv.py) vs the forward's torch code (`model.qkv_heads`) on the same
product, for Qwen3 (q/k-norm), Qwen2 (bias) and Llama layers, split or unsplit partial sums."""

import sys

import torch

from membudget.engine.model import LayerWeights, Shape, qkv_heads
from membudget.engine.rope import rope_table
from membudget.engine.triton_qkv import attention_inputs_op, split_heads

torch.manual_seed(0)
CASES = [  # heads, kv_heads, head_dim, splits (0: the 16-bit product itself), norm, bias, dtype
    (4, 2, 64, 3, True, False, torch.bfloat16),
    (2, 1, 96, 16, False, True, torch.bfloat16),  # half of D not a power of two
    (3, 3, 32, 0, False, False, torch.float16),
    (4, 1, 128, 1, True, True, torch.float16),
]
for heads, kv_heads, d, splits, norm, bias, dtype in CASES:
    n = (heads + 2 * kv_heads) * d
    partial = torch.randn(max(splits, 1), n) * 0.7
    if splits == 0:
        partial = partial.to(dtype)
    qkv = partial.float().sum(0).to(dtype)
    b = (torch.randn(n) * 0.3).to(dtype) if bias else None
    if bias:
        qkv = qkv + b
    w = LayerWeights(
        input_norm=None, qkv=None, o=None, post_norm=None, gate_up=None, down=None, qkv_bias=b,
        q_norm=(1 + 0.2 * torch.randn(d)).to(dtype) if norm else None,
        k_norm=(1 + 0.2 * torch.randn(d)).to(dtype) if norm else None,
    )  # fmt: skip
    cos, sin = rope_table(1e4 ** -(torch.arange(0, d, 2) / d), 1.0, 600, dtype, torch.device("cpu"))
    cos, sin = cos[517][None, None], sin[517][None, None]  # [1, 1, D] as the decode step passes them
    shape = Shape(heads, kv_heads, d, 1e-6, d**-0.5)
    ref = qkv_heads(qkv.view(1, 1, n), cos, sin, w, shape)
    got = split_heads(partial, b, w.q_norm, w.k_norm, cos, sin, 1e-6, heads, kv_heads)
    for name, r, g in zip("qkv", ref, got, strict=True):
        err = ((g.float() - r.float()).norm() / r.float().norm()).item()
        same = (g == r).float().mean().item()
        print(f"H={heads}/{kv_heads} D={d} splits={splits} norm={norm} bias={bias} {dtype} {name}: "
              f"rel err {err:.1e}, {same:.1%} identical")  # fmt: skip
        if g.shape != r.shape or g.dtype != dtype or err > 4e-3 or same < 0.9:
            sys.exit(f"mismatch in {name}")

# an opaque op under torch.compile: its fake agrees with it
cos, sin = torch.randn(1, 1, 64, dtype=torch.bfloat16), torch.randn(1, 1, 64, dtype=torch.bfloat16)
args = (
    torch.randn(2, 8 * 64),
    None,
    torch.ones(64, dtype=torch.bfloat16),
    torch.ones(64, dtype=torch.bfloat16),
)
torch.library.opcheck(attention_inputs_op, (*args, cos, sin, 1e-6, 4, 2))
print("ok qkv")
