"""One decoder layer as pure functions of tensors (Llama, Mistral, Qwen2, Qwen3): its weights, the
prefill path's two halves and the decode step's unit.

Per layer: RMSNorm -> q/k/v (+bias for Qwen2) -> per-head q/k RMSNorm (Qwen3) -> RoPE -> cache write +
attention -> o_proj -> residual; RMSNorm -> SwiGLU MLP -> residual. engine/model.py runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .linear import linear
from .rope import apply_rope
from .wquant import QuantWeight


class LayerWeights(NamedTuple):
    """Weights of one decoder layer; linear weights are [out_features, in_features].

    q/k/v are stacked into one matrix and gate/up into another, so a decode step runs 4 matrix
    products per layer instead of 7 (the element count, and so the memory, is unchanged).
    """

    input_norm: torch.Tensor  # [hidden]
    qkv: torch.Tensor | QuantWeight  # [(H + 2 H_kv) * D, hidden]
    o: torch.Tensor | QuantWeight  # [hidden, H * D]
    post_norm: torch.Tensor  # [hidden]
    gate_up: torch.Tensor | QuantWeight  # [2 * inter, hidden]
    down: torch.Tensor | QuantWeight  # [hidden, inter]
    qkv_bias: torch.Tensor | None = None  # [(H + 2 H_kv) * D] (Qwen2)
    q_norm: torch.Tensor | None = None  # [D] (Qwen3)
    k_norm: torch.Tensor | None = None


LINEARS = ("qkv", "o", "gate_up", "down")  # the LayerWeights fields that quantize


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension in fp32, cast back before the weight (as transformers does)."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


@dataclass(frozen=True, slots=True)
class Shape:
    """The constants of a layer's computation."""

    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    scale: float


def attention_inputs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, w: LayerWeights, shape: Shape):
    """x [B, S, hidden] -> q [B, H, S, D], k, v [B, H_kv, S, D]; q/k-norm and RoPE applied."""
    b, s, _ = x.shape
    h = rms_norm(x, w.input_norm, shape.eps)
    qkv = linear(h, w.qkv, w.qkv_bias).view(b, s, shape.heads + 2 * shape.kv_heads, shape.head_dim)
    q, k, v = qkv.split([shape.heads, shape.kv_heads, shape.kv_heads], dim=2)  # [B, S, H(_kv), D]
    if w.q_norm is not None:
        q, k = rms_norm(q, w.q_norm, shape.eps), rms_norm(k, w.k_norm, shape.eps)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def attention_output_and_mlp(
    x: torch.Tensor, attn: torch.Tensor, w: LayerWeights, shape: Shape
) -> torch.Tensor:
    """Residual stream x [B, S, hidden] after o_proj of attn [B, H, S, D] and the SwiGLU MLP."""
    x = attention_output(x, attn, w)
    return x + linear(mlp_activation(x, w, shape), w.down)


def attention_output(x: torch.Tensor, attn: torch.Tensor, w: LayerWeights) -> torch.Tensor:
    """Residual stream x [B, S, hidden] after o_proj of attn [B, H, S, D]."""
    b, s, _ = x.shape
    return x + linear(attn.transpose(1, 2).reshape(b, s, -1), w.o)


def mlp_activation(x: torch.Tensor, w: LayerWeights, shape: Shape) -> torch.Tensor:
    """The down projection's input silu(gate) * up [B, S, inter] of the residual stream x [B, S, hidden]."""
    gate, up = linear(rms_norm(x, w.post_norm, shape.eps), w.gate_up).chunk(2, dim=-1)
    return F.silu(gate) * up


def decode_layer(x, act, down, cos, sin, where, cache_op, buffers: tuple, w: LayerWeights, shape: Shape):
    """One layer for one new token per row, shifted by one matrix product: finishes the previous layer
    (its down projection of act [G, 1, inter] by the weight `down`, and the residual add; neither at
    layer 0, where act is None), then runs this layer up to its own down projection's input.
    x [G, 1, hidden] -> (x [G, 1, hidden] before this layer's down projection, act [G, 1, inter]).

    A pure function of tensors (weights and cache buffers passed as NamedTuples), so that on CUDA one
    torch.compile'd copy serves every layer but the first and fuses its element-wise work (norms,
    RoPE, SwiGLU). The shift puts each residual add in the same compiled unit as the input RMSNorm
    that reads it: one kernel for both instead of two per layer.
    `cache_op(buffers, q, k, v, where, scale)` writes the new k, v and returns the attention output.
    """
    if act is not None:
        x = x + linear(act, down)
    q, k, v = attention_inputs(x, cos, sin, w, shape)
    attn = cache_op(buffers, q, k, v, where, shape.scale)  # [G, H, 1, D]
    x = attention_output(x, attn, w)
    return x, mlp_activation(x, w, shape)
