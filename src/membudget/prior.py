"""The study's findings (arXiv 2510.10964, shared as STUDY.md) as an explicit scoring prior.

Used by `membudget plan` where no measurement exists. The score is in arbitrary "accuracy points";
only its ORDER means anything. Each term encodes one finding:

  capacity   12 * log2(params / 0.6B + 1)          bigger models know and reason more
  precision  math: 8-bit -0.5, 4-bit x0.75 of capacity (finding 2: 4-bit is memory-inefficient for
             math and code); knowledge: 8-bit 0, 4-bit -0.5 (4-bit broadly optimal for GPQA)
  budget     slope * log2(min(T, 24k) / 1k): the slope rises smoothly from 2 to 6 around the
             effective size of 8-bit 4B (4.2 GiB of weights; a logistic of width 1.5 GiB) (finding
             1: small models gain little from longer thinking, larger ones gain until ~20k+)
  samples    Maj@G: -3 * log2(G) below the threshold (finding 3: parallel configurations lie under
             the serial frontier there), +4 * log2(G) above it
  KV         eviction to B: -1.5 - c * log2(T / B) with c = 2 below 8-bit 8B (8.9 GiB), 3 above
             (finding 5: eviction is the better compression for small models); quant:8 -0.5
             (large) / -2 (small), quant:4 -6, quant:2 -15 (finding 5: 4-bit drops sharply)

tests/test_plan.py checks the orderings the study states (e.g. Qwen3-1.7B 8-bit at 6k beats
Qwen3-0.6B 8-bit at 18k; Qwen3-4B 4-bit at 10k beats 1.7B 8-bit at 18k; 8B 8-bit beats 14B 4-bit).
"""

from __future__ import annotations

import math

from .memory import GIB, KVPolicy, weight_bytes
from .spec import ModelSpec

THRESHOLD_GIB = 4.2  # "8-bit 4B"
EVICTION_SPLIT_GIB = 8.9  # "8-bit 8B"
SATURATION = 24_000


def prior_score(spec: ModelSpec, bits: int, kv: str, tokens: int, samples: int, kind: str) -> float:
    """The prior's score of a scenario for a task kind ("math" or "knowledge")."""
    if kind not in ("math", "knowledge"):
        raise ValueError(f"task kind must be math or knowledge, not {kind!r}")
    effective = weight_bytes(spec, bits) / GIB
    large = effective >= THRESHOLD_GIB
    capacity = 12 * math.log2(spec.total_params / 0.6e9 + 1)
    if kind == "math":
        score = capacity * 0.75 if bits == 4 else capacity - (0.5 if bits == 8 else 0.0)
    else:
        score = capacity - (0.5 if bits == 4 else 0.0)
    slope = 2 + 4 / (1 + math.exp(-(effective - THRESHOLD_GIB) / 1.5))
    score += slope * math.log2(max(min(tokens, SATURATION), 1000) / 1000)
    score += (4 if large else -3) * math.log2(samples)
    policy = KVPolicy.parse(kv)
    small_for_kv = effective < EVICTION_SPLIT_GIB
    if policy.eviction and policy.budget < tokens:
        score -= 1.5 + (2 if small_for_kv else 3) * math.log2(tokens / policy.budget)
    if policy.bits == 8:
        score -= 2 if small_for_kv else 0.5
    elif policy.bits == 4:
        score -= 6
    elif policy.bits == 2:
        score -= 15
    return score
