"""Rotary position embeddings: one cos/sin table per model, applied to q and k at write time."""

from __future__ import annotations

import torch


def rope_table(
    inv_freq: torch.Tensor, scaling: float, max_positions: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [max_positions, head_dim], exactly as transformers computes them.

    `inv_freq` [head_dim / 2] and `scaling` come from the model's own rotary module, so every RoPE
    variant transformers knows (default, llama3, yarn, ...) is covered without re-deriving it.
    """
    positions = torch.arange(max_positions, dtype=torch.float32, device=device)
    freqs = positions[:, None] * inv_freq.float().to(device)[None, :]  # [P, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [P, D]
    return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, S, D] rotated by cos/sin [B, S, D] (the rotate-half convention)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, S, D]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
