"""Sampling with temperature, top-k, top-p and min-p, reproducible per sample.

Randomness is counter-based: the Gumbel noise for candidate token `t` of a row with seed `s` at
position `p` is a hash of (s, p, t). So a sample depends only on its own seed and logits -- not on
the batch it runs in, the step count, the device's RNG state or a CUDA graph -- which makes row i
of a G-sample batch equal the same sample run alone, and budget checkpoints equal separate runs.
Gumbel-max over the filtered candidates draws exactly from the renormalised distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_M32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Qwen3 thinking defaults. top_k = 0 and top_p = 1 disable those filters; greedy ignores the rest."""

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    min_p: float = 0.0
    greedy: bool = False

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be positive (or use greedy), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be 0 (off) or positive, not {self.top_k}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min-p must be in [0, 1), not {self.min_p}")


def row_seeds(seed: int, rows: int) -> list[int]:
    """Independent 31-bit seeds for rows 0..rows-1 of a base seed (row i's seed ignores `rows`)."""
    return [_mix_int(_mix_int(seed & _M32) ^ (0x9E3779B1 * (i + 1) & _M32)) & 0x7FFFFFFF for i in range(rows)]


def _mix_int(x: int) -> int:
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash on int64 tensors (products stay below 2**63, so no overflow)."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def gumbel(seeds: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Gumbel noise [G, K] for seeds [G], positions [G] and candidate token ids [G, K]."""
    x = (seeds[:, None] * 0x2545F491 & _M32) ^ _mix(positions[:, None] * 0x61C88647 & _M32)
    x = _mix(x ^ (tokens * 0x7FEB352D & _M32))
    u = ((x >> 8).float() + 0.5) * (1.0 / 2**24)  # uniform in (0, 1), 24 bits
    return -torch.log(-torch.log(u))


def sample(
    logits: torch.Tensor, params: SamplingParams, seeds: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Next tokens [G] from fp32 logits [G, V]; `positions` [G] are the positions being sampled."""
    if params.greedy:
        return logits.argmax(dim=-1)
    if logits.is_cuda:  # (imported here: a CPU-only install need not have Triton)
        from .kernels.sample import sample_top_k, supports

        if supports(logits, params.top_k):  # the same draw in three kernels
            return sample_top_k(
                logits, seeds, positions, params.temperature, params.top_k, params.top_p, params.min_p
            )
    scaled = logits / params.temperature
    if params.top_k > 0:
        values, tokens = scaled.topk(min(params.top_k, scaled.shape[-1]), dim=-1)  # sorted, [G, K]
    else:
        values, tokens = scaled.sort(dim=-1, descending=True)
    probs = values.softmax(dim=-1)
    drop = torch.zeros_like(probs, dtype=torch.bool)
    if params.top_p < 1:
        drop |= (probs.cumsum(dim=-1) - probs) > params.top_p  # keeps the smallest set reaching top_p
    if params.min_p > 0:
        drop |= probs < params.min_p * probs[:, :1]
    values = values.masked_fill(drop, float("-inf"))
    choice = (values + gumbel(seeds, positions, tokens)).argmax(dim=-1, keepdim=True)
    return tokens.gather(-1, choice)[:, 0]
