"""Decode attention over a slotted cache: split-KV Triton kernel on CUDA, masked batched products
elsewhere."""

from __future__ import annotations

import torch

GPU_HEAD_DIMS = (64, 128)  # head sizes the Triton attention, KV-write and similarity kernels are built for


def decode_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [G, H, 1, D]; k, v [G, H_kv, C, D]; lengths [G] valid slots per row -> [G, H, 1, D].
    Reads only the slots up to the longest row (a host sync: this path is for the CPU). Scores and
    softmax in fp32 (or the inputs' wider type), written out as batched products rather than SDPA:
    torch's CPU SDPA gives rows with identical inputs different last bits on some CPUs (AVX2), and a
    row's tokens must not depend on its place in the batch."""
    end = int(lengths.max())
    g, heads, _, d = q.shape
    kv_heads = k.shape[1]
    wide = torch.promote_types(q.dtype, torch.float32)
    k, v = k[:, :, :end].to(wide), v[:, :, :end].to(wide)
    qg = q.to(wide).reshape(g, kv_heads, heads // kv_heads, d)  # [G, H_kv, rep, D]
    scores = torch.matmul(qg, k.transpose(-1, -2)) * scale  # [G, H_kv, rep, end]
    valid = torch.arange(end, device=q.device)[None, :] < lengths[:, None]  # [G, end]
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)  # [G, H_kv, rep, D]
    return out.reshape(g, heads, 1, d).to(q.dtype)


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float, tickets=None
) -> torch.Tensor:
    """Dispatch: the Triton split-KV kernel on CUDA (tickets: see `split_kv_decode`), the reference
    elsewhere. Shapes as the reference."""
    if q.is_cuda:
        from .kernels.attention import split_kv_decode

        return split_kv_decode(q, k, v, lengths, scale, tickets=tickets)
    return decode_attention_reference(q, k, v, lengths, scale)
