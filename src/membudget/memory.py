"""Pure memory accounting: weights, KV cache per policy, samples and workspace (DESIGN.md §2).

All figures are bytes; GiB = 2**30 bytes. Nothing here touches a GPU: the engine's tests check these
numbers against what torch really allocates.

Conventions
  * Weights at b in {8, 4} bits: every linear weight matrix of the decoder layers is stored as packed
    b-bit integers in groups of 128 along its input dimension, each group with a 16-bit scale and a
    b-bit zero; embeddings, norms, biases and the LM head stay in 16 bits. At 16 bits everything is
    2 bytes per parameter.
  * KV, full: tokens x layers x kv_heads x head_dim x 2 (K and V) x 2 bytes, for each of G samples.
  * KV, quant:q: the same element count x (q/8 + 32/(8*64)) bytes (group 64 with a 16-bit scale and
    a 16-bit zero) plus a bf16 residual window of the newest 128 tokens per sequence.
  * KV, eviction NAME:B: a sequence holds at most B + 128 tokens (every method compacts to B when
    128 tokens past it) plus the answer slots of a budget checkpoint; the policy's state is counted
    with the KV: the newest `window` queries (+1 spare) per layer and head in 16 bits, and for H2O a
    fp32 running score per held token, layer and KV head.
  * Convention "all" (the default): prompt + generated tokens, plus the engine's workspace. One
    prompt is prefilled once, but each of the G samples holds its own copy of the prompt's KV in a
    slotted cache, so the prompt counts G times.
  * Convention "study" (arXiv 2510.10964, Appendix B): weights + KV of the generated tokens only;
    no prompt KV and no workspace.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from .spec import ModelSpec

GIB = 2**30
WEIGHT_BITS = (16, 8, 4)
WEIGHT_GROUP = 128
KV_QUANT_BITS = (2, 4, 8)
KV_GROUP = 64
KV_RESIDUAL = 128
CONVENTIONS = ("all", "study")
# Memory the engine holds on a GPU beyond weights, KV and activations: cuBLAS workspaces of the decode
# and capture streams, the CUDA-graph pool and compiled-kernel buffers, and in the first generation of
# a loaded model the compiler's transient buffers. The measured peak minus everything else: 45-160 MiB
# over four Qwen3 shapes on H200s, 75-127 MiB over the acceptance runs' generations on an H100
# (SmolLM2-135M, every weight width and KV family; deterministic per configuration). The value
# centres the relative error of those generations, whose ~1 GB totals make them the hardest case
# (bench/BASELINE.md, "Memory"): an accounting that errs high refuses rather than runs out.
ENGINE_OVERHEAD = 97 * 2**20


def eviction_method(name: str):
    """The eviction policy class `name` (engine/policies), or None: each declares its own facts, which
    the accounting reads: `buffer` (tokens written between compactions, the slack above B), `window`
    (queries recorded for scoring) and `accumulates` (a running score per held slot). Imported when
    first needed: the policies compute with torch, the rest of this module does not."""
    from .engine.policies import POLICIES

    return POLICIES.get(name)


def eviction_names() -> list[str]:
    from .engine.policies import POLICIES

    return list(POLICIES)


def _policy_help() -> str:
    return (
        "expected 'full', 'quant:Q' (Q in 2, 4, 8), 'NAME:B' with NAME in "
        f"{', '.join(eviction_names())} and B a positive token budget, or 'NAME:B+quant:Q'"
    )


class PolicyError(ValueError):
    """A malformed KV policy string (message says what is accepted)."""


@dataclass(frozen=True, slots=True)
class KVPolicy:
    """A KV-cache policy: optional eviction to `budget` tokens, optional `bits`-bit quantized storage."""

    eviction: str | None = None
    budget: int | None = None
    bits: int | None = None

    @classmethod
    def parse(cls, text: str) -> KVPolicy:
        """Parse `full`, `quant:8`, `rkv:4096`, `rkv:4096+quant:8` (parts in any order)."""
        text = text.strip().lower()
        if text == "full":
            return cls()
        eviction = budget = bits = None
        for part in text.split("+"):
            match = re.fullmatch(r"([a-z0-9_]+):(\d+)", part.strip())
            if not match:
                raise PolicyError(f"malformed KV policy {text!r} (part {part!r}): {_policy_help()}")
            name, value = match.group(1), int(match.group(2))
            if name == "quant":
                if bits is not None or value not in KV_QUANT_BITS:
                    raise PolicyError(f"bad quantization in KV policy {text!r}: {_policy_help()}")
                bits = value
            elif eviction_method(name) is not None:
                if eviction is not None or value <= 0:
                    raise PolicyError(f"bad eviction in KV policy {text!r}: {_policy_help()}")
                eviction, budget = name, value
            else:
                raise PolicyError(f"unknown KV method {name!r} in {text!r}: {_policy_help()}")
        return cls(eviction, budget, bits)

    def __str__(self) -> str:
        parts = []
        if self.eviction:
            parts.append(f"{self.eviction}:{self.budget}")
        if self.bits:
            parts.append(f"quant:{self.bits}")
        return "+".join(parts) or "full"

    @property
    def slack(self) -> int:
        return eviction_method(self.eviction).buffer if self.eviction else 0

    def held_tokens(self, tokens: int, answer_slots: int = 0) -> int:
        """Slots one sequence holds when `tokens` would be held without eviction, `answer_slots` of
        them for the answer of a budget checkpoint (never evicted)."""
        if self.eviction is None:
            return tokens
        return min(tokens, self.budget + self.slack + answer_slots)

    def state_bytes(self, spec: ModelSpec, held: int, element_bytes: int = 2) -> int:
        """Bytes of one sequence's eviction state: recorded queries and running scores."""
        if self.eviction is None:
            return 0
        method = eviction_method(self.eviction)
        window = method.window
        queries = (
            spec.num_layers * spec.num_heads * (window + 1) * spec.head_dim * element_bytes if window else 0
        )
        scores = spec.num_layers * spec.num_kv_heads * held * 4 if method.accumulates else 0
        return queries + scores


def weight_bytes(spec: ModelSpec, bits: int) -> int:
    """Bytes of all weights at `bits` (16, 8 or 4), packed, with group-128 scale and zero."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, not {bits}")
    if bits == 16:
        return 2 * spec.total_params
    total = 2 * spec.kept_params
    for _, n_in, n_out in spec.linear_shapes():
        groups = math.ceil(n_in / WEIGHT_GROUP) * n_out
        per_matrix = math.ceil(n_in * n_out * bits / 8) + 2 * groups + math.ceil(groups * bits / 8)
        total += spec.num_layers * per_matrix
    return total


def kv_bytes_per_token(spec: ModelSpec, bits: int | None = None, element_bytes: int = 2) -> float:
    """Bytes one token adds to the cache of one sequence (all layers, K and V).

    With `bits`, the quantized storage including its group metadata (may be fractional per token).
    """
    elements = spec.kv_elements_per_token
    if bits is None:
        return elements * element_bytes
    return elements * (bits / 8 + 32 / (8 * KV_GROUP))


def kv_bytes(
    spec: ModelSpec,
    policy: KVPolicy,
    tokens_per_sequence: int,
    samples: int = 1,
    element_bytes: int = 2,
    answer_slots: int = 0,
) -> int:
    """KV bytes (with the eviction state) for `samples` sequences that would each hold
    `tokens_per_sequence` tokens uncompressed; see KVPolicy.held_tokens for `answer_slots`."""
    held = policy.held_tokens(tokens_per_sequence, answer_slots)
    if policy.bits is None:
        per_seq = held * kv_bytes_per_token(spec, None, element_bytes)
    else:
        residual = min(held, KV_RESIDUAL) * kv_bytes_per_token(spec, None, element_bytes)
        per_seq = math.ceil(held * kv_bytes_per_token(spec, policy.bits)) + residual
    return int(samples * (per_seq + policy.state_bytes(spec, held, element_bytes)))


def workspace_bytes(
    spec: ModelSpec, samples: int, prompt_tokens: int, positions: int = 0, act_bytes: int = 2
) -> int:
    """Estimated transient memory: the larger of prefill and decode activations, sampling buffers, and
    the RoPE table.

    Prefill runs the prompt once (P rows); decode runs G rows. Per row a layer holds its input, the
    q/k/v projections, the attention output and the MLP's gate/up products. The logits are the LM
    head's 16-bit output and its fp32 copy, G x vocab each; the GPU's top-k draw (engine/kernels/sample.py)
    adds only G x (vocab / 2048) x k candidate ids. (A draw without top-k sorts the whole vocabulary: about 3x the
    logits more, not counted.) The engine's RoPE table holds
    cos and sin for every one of the `positions` cache slots. ENGINE_OVERHEAD is the GPU runtime's
    share, calibrated against torch's measured peak (bench/BASELINE.md).
    """
    per_row = (
        2 * spec.hidden_size
        + (spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim
        + spec.num_heads * spec.head_dim
        + 2 * spec.intermediate_size
    ) * act_bytes
    rows = max(prompt_tokens, samples, 1)
    logits = samples * spec.vocab_size * (2 + 4)
    rope = 2 * positions * spec.head_dim * act_bytes
    return rows * per_row + logits + rope + ENGINE_OVERHEAD


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a memory figure is for: (model, weight bits, KV policy, token budget T, samples G)."""

    model: str
    weights: int
    kv: str
    tokens: int
    samples: int = 1
    prompt_tokens: int = 0
    convention: str = "all"
    answer_slots: int = 0  # of `tokens`, slots a budget checkpoint's answer uses past an eviction limit

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_BITS:
            raise ValueError(
                f"weights must be one of {', '.join(map(str, WEIGHT_BITS))} bits, not {self.weights}"
            )
        if self.tokens <= 0:
            raise ValueError(f"tokens must be a positive token budget, not {self.tokens}")
        if self.samples <= 0:
            raise ValueError(f"samples must be at least 1, not {self.samples}")
        if self.prompt_tokens < 0:
            raise ValueError(f"prompt tokens must be 0 or more, not {self.prompt_tokens}")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, not {self.convention!r}")


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    model: str
    weights: int
    kv: str
    tokens: int
    samples: int
    prompt_tokens: int
    convention: str
    kv_tokens_per_sequence: int
    weights_bytes: int
    kv_bytes: int
    workspace_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.workspace_bytes

    def to_dict(self) -> dict:
        out = asdict(self)
        out["total_bytes"] = self.total_bytes
        for key in ("weights", "kv", "workspace", "total"):
            out[f"{key}_gib"] = round(out[f"{key}_bytes"] / GIB, 4)
        return out


def breakdown(spec: ModelSpec, scenario: Scenario) -> MemoryBreakdown:
    """Weights, KV and workspace bytes of one scenario."""
    policy = KVPolicy.parse(scenario.kv)
    counted_prompt = scenario.prompt_tokens if scenario.convention == "all" else 0
    per_seq = counted_prompt + scenario.tokens
    return MemoryBreakdown(
        model=scenario.model,
        weights=scenario.weights,
        kv=str(policy),
        tokens=scenario.tokens,
        samples=scenario.samples,
        prompt_tokens=scenario.prompt_tokens,
        convention=scenario.convention,
        kv_tokens_per_sequence=policy.held_tokens(per_seq, scenario.answer_slots),
        weights_bytes=weight_bytes(spec, scenario.weights),
        kv_bytes=kv_bytes(spec, policy, per_seq, scenario.samples, answer_slots=scenario.answer_slots),
        workspace_bytes=(
            workspace_bytes(spec, scenario.samples, scenario.prompt_tokens)
            if scenario.convention == "all"
            else 0
        ),
    )


_UNITS = {
    "": GIB,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": GIB,
    "gib": GIB,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}


def parse_size(text: str) -> int:
    """Bytes in a size such as `24GiB` (binary), `24GB` (decimal), `24G` or `24` (both GiB), `512MiB`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(
            f"cannot read the memory size {text!r}: write a number with a unit, such as "
            "24GiB (2^30 bytes), 24GB (10^9 bytes) or 24G (same as GiB)"
        )
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive")
    return int(value)
