"""Decode attention over a slotted cache: split-KV Triton kernel on CUDA, masked SDPA elsewhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GPU_HEAD_DIMS = (64, 128)  # head sizes the Triton attention, KV-write and similarity kernels are built for


def decode_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [G, H, 1, D]; k, v [G, H_kv, C, D]; lengths [G] valid slots per row -> [G, H, 1, D].
    Reads only the slots up to the longest row (a host sync: this path is for the CPU)."""
    end = int(lengths.max())
    k, v = k[:, :, :end], v[:, :, :end]
    capacity = k.shape[2]
    mask = torch.arange(capacity, device=q.device)[None, :] < lengths[:, None]  # [G, C]
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask[:, None, None, :], scale=scale, enable_gqa=True
    )


def decode_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, scale: float, tickets=None
) -> torch.Tensor:
    """Dispatch: the Triton split-KV kernel on CUDA (tickets: see `split_kv_decode`), the reference
    elsewhere. Shapes as the reference."""
    if q.is_cuda:
        from .triton_attention import split_kv_decode

        return split_kv_decode(q, k, v, lengths, scale, tickets=tickets)
    return decode_attention_reference(q, k, v, lengths, scale)
