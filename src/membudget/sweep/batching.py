"""Generations that fill a GPU: how many problems one generation holds, from the exact accounting.

A generation of p problems with G samples each holds p*G rows in one cache, allocated for its longest
prompt plus the largest budget and the answer slots of its checkpoints (engine/generate.py), so its
bytes are `memory.breakdown` of that scenario with p*G samples (weights once, every row's KV, the
workspace of p*G rows). `batch = "auto"` takes the largest p whose generation fits the memory less
MARGIN; when even one problem's G rows do not fit, its samples run in passes of fewer rows (a row
depends only on its seed and sample index, so the results are those of one pass). A scenario whose
single sample does not fit is refused before anything loads, with the budget that would fit.

Prompt lengths are estimated from the prompt text before any tokenizer is loaded (PROMPT_BYTES_PER_TOKEN
bytes a token plus the chat template's TEMPLATE_TOKENS): tokenizers of the registry's models take
3-4 bytes a token on English and LaTeX, so the estimate errs long, toward smaller batches.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..memory import GIB, Scenario, breakdown
from ..spec import ModelSpec

MARGIN = 0.05  # of the memory left free beyond the accounting (allocator fragmentation, graph pools)
PROMPT_BYTES_PER_TOKEN = 2
TEMPLATE_TOKENS = 64
FORCED_TOKENS = 32  # upper bound on the end-of-thinking marker plus the forced answer prefix


class FitError(ValueError):
    """A scenario whose single sample does not fit the memory (the message says what would)."""


@dataclass(frozen=True, slots=True)
class Batch:
    problems: int  # problems per generation
    rows: int  # rows of one generation (problems x samples of one pass)
    passes: int  # sample passes per problem: 1 unless one problem's G rows do not fit
    bytes: int  # accounted bytes of one generation


def prompt_tokens(text: str) -> int:
    """A prompt's token count before tokenization, erring long (see the module docstring)."""
    return len(text.encode("utf-8")) // PROMPT_BYTES_PER_TOKEN + TEMPLATE_TOKENS


def answer_slots(answer_tokens: int) -> int:
    """Cache slots a checkpoint's answer may take: the last thinking token, at most FORCED_TOKENS
    forced ones, and the answer's tokens (engine/generate.py's answer_slots, before a tokenizer)."""
    return 1 + FORCED_TOKENS + answer_tokens


def generation_bytes(
    spec: ModelSpec, weights: int, kv: str, budget: int, rows: int, prompt: int, answer: int
) -> int:
    """Accounted bytes of one generation: `rows` rows of a `prompt`-token prompt, thinking up to
    `budget` tokens, with `answer` slots for a checkpoint's answer."""
    scenario = Scenario(spec.name, weights, kv, budget + answer, rows, prompt, answer_slots=answer)
    return breakdown(spec, scenario).total_bytes


def fit_batch(
    spec: ModelSpec,
    weights: int,
    kv: str,
    budget: int,
    samples: int,
    prompt: int,
    answer_tokens: int,
    memory_bytes: int,
    problems: int,
    requested: int | str = "auto",
) -> Batch:
    """The generation size for `problems` problems of G = `samples` under `memory_bytes`: the largest
    number of problems that fits (`requested` = "auto") or `requested` problems, with G split into
    passes where one problem's rows do not fit. Raises FitError when one sample does not fit."""
    answer = answer_slots(answer_tokens)
    limit = int(memory_bytes * (1 - MARGIN))

    def need(rows: int) -> int:
        return generation_bytes(spec, weights, kv, budget, rows, prompt, answer)

    if need(1) > limit:
        raise FitError(_what_fits(spec, weights, kv, budget, prompt, answer, memory_bytes, need(1)))
    if need(samples) > limit:  # one problem's G rows do not fit: passes of the most rows that do
        rows = _largest(1, samples, lambda r: need(r) <= limit)
        return Batch(1, rows, -(-samples // rows), need(rows))
    most = _largest(1, problems, lambda p: need(p * samples) <= limit)
    count = most if requested == "auto" else min(int(requested), most)
    return Batch(count, count * samples, 1, need(count * samples))


def _largest(lo: int, hi: int, ok) -> int:
    """The largest n in [lo, hi] with ok(n), given ok(lo) and ok monotone (true, then false)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def largest_budget(
    spec: ModelSpec, weights: int, kv: str, rows: int, prompt: int, answer: int, memory_bytes: int, up_to: int
) -> int:
    """The largest budget in [1, up_to] whose generation of `rows` rows fits `memory_bytes` less
    MARGIN (0 if none does)."""
    limit = int(memory_bytes * (1 - MARGIN))

    def fits(budget: int) -> bool:
        return generation_bytes(spec, weights, kv, budget, rows, prompt, answer) <= limit

    return _largest(1, up_to, fits) if fits(1) else 0


def _what_fits(spec, weights, kv, budget, prompt, answer, memory_bytes, need) -> str:
    limit = int(memory_bytes * (1 - MARGIN))
    name = f"{spec.name} {weights}-bit {kv} T={budget:,}"
    head = f"{name}: one sample needs {need / GIB:.2f} GiB, more than the {limit / GIB:.2f} GiB available"
    if generation_bytes(spec, weights, kv, 1, 1, prompt, answer) > limit:
        return f"{head}; even a 1-token budget does not fit at {weights} bits: use fewer weight bits or a smaller model"
    tokens = largest_budget(spec, weights, kv, 1, prompt, answer, memory_bytes, budget)
    return f"{head}; at this setting a budget up to T={tokens:,} fits, or compress the KV cache"
