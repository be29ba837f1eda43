"""The decode loop: G samples from one prefill, budget forcing, and answers at every budget checkpoint.

Protocol (s1-style budget forcing, as in arXiv 2510.10964):
  * A row "thinks" until its thinking budget T. If it tries to stop early (emits the end-of-thinking
    token, or EOS) the token is replaced by `wait_text` (when `budget_forcing` is on).
  * At T the thinking is closed and the answer is forced: `</think>` (thinking models) and the answer
    prefix are fed, then at most A answer tokens are sampled (EOS ends them).
  * Budget checkpoints T1 < ... < Tn: every row that is still thinking at Ti answers there from the same
    trajectory (the answer tokens go into slots past the thinking, then the row continues thinking
    from where it was). A row's tokens depend only on its own seed and positions, so each answer
    equals the answer of a separate run with budget Ti.
  * With forcing off, a row that closes its thinking itself answers freely (at most A tokens); its
    answer stands for every budget at or above its thinking length.
All rows advance in lockstep; rows that wait (finished, or outside a checkpoint) are fed a dummy
token whose cache write lands in a free slot and whose output is ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..memory import KVPolicy
from ..tasks.prompts import MATH_ANSWER_PREFIX
from .model import Decoder
from .sampling import SamplingParams, row_seeds, sample
from .step import DecodeStep

THINK_CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    budgets: tuple[int, ...] = (2048,)  # thinking budgets T1 < ... < Tn
    samples: int = 1
    answer_tokens: int = 32  # A
    answer_prefix: str = MATH_ANSWER_PREFIX
    budget_forcing: bool = True
    wait_text: str = "Wait"
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    first_sample: int = 0  # rows are samples first_sample.. of this seed (extend G without rerunning)
    kv: str = "full"  # KV policy: full, quant:Q, NAME:B, NAME:B+quant:Q (memory.KVPolicy)

    def __post_init__(self) -> None:
        if not self.budgets or any(t <= 0 for t in self.budgets):
            raise ValueError(f"budgets must be positive token counts, got {list(self.budgets)}")
        if list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be distinct and increasing, got {list(self.budgets)}")
        if self.first_sample < 0:
            raise ValueError(f"first sample must be 0 or more, not {self.first_sample}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, not {self.samples}")
        if self.answer_tokens < 1:
            raise ValueError(f"answer tokens must be at least 1, not {self.answer_tokens}")
        KVPolicy.parse(self.kv)  # a malformed policy fails here, with what is accepted


@dataclass(slots=True)
class Sample:
    """One row's result. `answers[T]` is the answer text at budget T (forced or natural)."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "budget" (answer forced at the last budget), "eos", or "answer_cap"
    thinking_tokens: int
    answers: dict[int, str]
    answer_token_ids: dict[int, list[int]]


@dataclass(slots=True)
class _Row:
    tokens: list[int]  # emitted tokens of the main trajectory; tokens[-1] is not yet in the cache
    length: int  # position of tokens[-1]
    phase: str = "think"  # think -> (answer ->) done
    queue: list[int] = field(default_factory=list)  # forced tokens still to emit (rest of "Wait")
    natural_at: int | None = None  # thinking tokens at the natural end (close or EOS emitted)
    closed: bool = False  # the natural end was the closing tag (not EOS)
    answer_count: int = 0  # tokens of a natural answer
    finish: str = ""
    answers: dict = field(default_factory=dict)


@dataclass(slots=True)
class Timings:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0


class Generator:
    """Runs GenerationConfig on one prompt with a Decoder and its tokenizer."""

    def __init__(self, model: Decoder, tokenizer, use_graph: bool | None = None, on_step=None) -> None:
        """`on_step(rows)` is called after every decode step with the number of rows it advanced
        (for progress bars)."""
        self.model, self.tokenizer, self.use_graph, self.on_step = model, tokenizer, use_graph, on_step
        self.eos = _eos_ids(tokenizer)
        close = tokenizer.convert_tokens_to_ids(THINK_CLOSE) if THINK_CLOSE in tokenizer.get_vocab() else None
        self.think_close = close
        self.timings = Timings()
        self.peak_memory_bytes = 0

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def max_steps(self, config: GenerationConfig) -> int:
        """An upper bound on decode steps: thinking, plus one answer phase per budget."""
        answer = 1 + len(self._forced(config)) + config.answer_tokens
        return config.budgets[-1] + answer * len(config.budgets)

    def answer_slots(self, config: GenerationConfig) -> int:
        """Cache slots an answer phase writes: the last thinking token, the forced tokens, A answers."""
        return 1 + len(self._forced(config)) + config.answer_tokens

    def capacity(self, prompt_tokens: int, config: GenerationConfig) -> int:
        """Tokens a row would hold uncompressed (the cache may hold fewer: KVPolicy.held_tokens)."""
        return prompt_tokens + config.budgets[-1] + self.answer_slots(config)

    def _forced(self, config: GenerationConfig) -> list[int]:
        close = [self.think_close] if self.think_close is not None else []
        return close + self._encode(config.answer_prefix)

    def generate(self, prompt_ids: list[int], config: GenerationConfig) -> list[Sample]:
        """G samples of one prompt (seed `config.seed`)."""
        return self.generate_batch([prompt_ids], config)[0]

    def generate_batch(
        self, prompts: list[list[int]], config: GenerationConfig, seeds: list[int] | None = None
    ) -> list[list[Sample]]:
        """G samples of each prompt (prompt i with seed seeds[i], default config.seed), all rows in one
        cache and one decode step. A row's tokens depend only on its seed, its sample index and its
        positions, so each prompt's samples equal those of a run of that prompt alone (tested)."""
        if not prompts or any(not p for p in prompts):
            raise ValueError("a prompt is empty")
        seeds = [config.seed] * len(prompts) if seeds is None else seeds
        model, device = self.model, self.model.device
        g = config.samples
        forced, wait = self._forced(config), self._encode(config.wait_text)
        if config.budget_forcing and not wait:
            raise ValueError("budget forcing needs a non-empty wait text")
        # the last generation's cache goes before this one's is allocated: the peak recorded below is
        # then this generation's own (weights, this cache, workspace), comparable with its accounting
        self.cache = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        longest = max(len(p) for p in prompts)
        cache = model.new_cache(
            g * len(prompts), self.capacity(longest, config), config.kv, self.answer_slots(config)
        )
        self.cache = cache
        row_seed = [
            s for seed in seeds for s in row_seeds(seed, config.first_sample + g)[config.first_sample :]
        ]
        step = DecodeStep(model, cache, config.sampling, row_seed, self.use_graph)  # captures before prefill

        t0 = time.perf_counter()
        rows: list[_Row] = []
        for i, prompt in enumerate(prompts):
            p, span = len(prompt), slice(i * g, (i + 1) * g)
            logits = model.prefill(torch.tensor(prompt, device=device), cache, rows=span)  # [V]
            positions = torch.full((g,), p, device=device)
            first = sample(logits.expand(g, -1), config.sampling, step.seeds[span], positions).tolist()
            for token in first:
                rows.append(_Row(tokens=[], length=p))
                self._emit(rows[-1], token, config, wait)
        self.timings = Timings(prefill_s=time.perf_counter() - t0)
        t0 = time.perf_counter()
        for budget in config.budgets:
            # think until every thinking row holds `budget` tokens (natural answers go on alongside)
            while any(r.phase == "think" and len(r.tokens) < budget for r in rows):
                self._advance(step, rows, config, wait, [r.phase != "done" for r in rows])
            thinking = [i for i, r in enumerate(rows) if r.phase == "think"]
            if thinking:
                self._answer_at(
                    budget, thinking, rows, step, forced, config, last=budget == config.budgets[-1]
                )
        while any(r.phase == "answer" for r in rows):  # natural answers still running
            self._advance(step, rows, config, wait, [r.phase == "answer" for r in rows])
        self.timings.decode_s = time.perf_counter() - t0
        if device.type == "cuda":
            self.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
        results = [self._result(r, config) for r in rows]
        return [results[i * g : (i + 1) * g] for i in range(len(prompts))]

    def _step(
        self, step: DecodeStep, ids: list[int], positions: list[int], live: list[bool], record: bool
    ) -> list[int]:
        """One decode step; `live` rows advance (the others write a dummy into a free slot), and
        with `record` they advance their main trajectory (what eviction policies see)."""
        self.timings.steps += 1
        slots, qslots = self.cache.where([on and record for on in live])
        out = step.run(torch.tensor(ids), torch.tensor(positions), torch.tensor(slots), torch.tensor(qslots))
        out = out.tolist()
        advanced = [i for i, on in enumerate(live) if on]
        self.cache.advance(advanced, advanced if record else [])
        if self.on_step is not None:
            self.on_step(len(advanced))
        return out

    def _advance(
        self, step: DecodeStep, rows: list[_Row], config: GenerationConfig, wait: list[int], live: list[bool]
    ) -> None:
        """One step of the main trajectory for the `live` rows."""
        ids = [r.tokens[-1] if on else 0 for r, on in zip(rows, live, strict=True)]
        out = self._step(step, ids, [r.length for r in rows], live, record=True)
        for row, token, on in zip(rows, out, live, strict=True):
            if on:
                row.length += 1
                self._emit(row, row.queue.pop(0) if row.queue else token, config, wait)

    def _emit(self, row: _Row, token: int, config: GenerationConfig, wait: list[int]) -> None:
        """Append one emitted token to a row in the think or answer phase and move its state."""
        if row.phase == "think":
            ends = token in self.eos or token == self.think_close
            if ends and config.budget_forcing:
                token, row.queue = wait[0], list(wait[1:])
            if ends and not config.budget_forcing:
                row.natural_at = len(row.tokens) + 1  # budgets >= this see the natural end
                if token in self.eos:
                    row.phase, row.finish = "done", "eos"
                    return
                row.phase, row.closed = "answer", True
            row.tokens.append(token)
        elif row.phase == "answer":
            if token in self.eos:
                row.phase, row.finish = "done", "eos"
                return
            row.tokens.append(token)
            row.answer_count += 1
            if row.answer_count >= config.answer_tokens:
                row.phase, row.finish = "done", "answer_cap"

    def _answer_at(
        self,
        budget: int,
        which: list[int],
        rows: list[_Row],
        step: DecodeStep,
        forced: list[int],
        config: GenerationConfig,
        last: bool,
    ) -> None:
        """Force the answer for rows `which` (all at `budget` thinking tokens), decode it into the slots
        after their thinking, and record it. Their thinking state is left untouched (the cache slots
        used here are rewritten when the thinking goes on), unless this is the last budget."""
        cur = {i: rows[i].tokens[-1] for i in which}  # fed first: the last thinking token
        length = {i: rows[i].length for i in which}
        answer = {i: [] for i in which}
        sampled = {i: 0 for i in which}
        open_ = set(which)
        saved = self.cache.begin_answer(which, self.answer_slots(config))
        for j in range(len(forced) + config.answer_tokens):
            ids = [cur[i] if i in open_ else 0 for i in range(len(rows))]
            positions = [length.get(i, r.length) for i, r in enumerate(rows)]
            out = self._step(step, ids, positions, [i in open_ for i in range(len(rows))], record=False)
            for i in list(open_):
                length[i] += 1
                if j < len(forced):
                    token = forced[j]
                else:
                    token = out[i]
                    if token in self.eos:
                        open_.discard(i)
                        continue
                    sampled[i] += 1
                answer[i].append(token)
                cur[i] = token
                if sampled[i] >= config.answer_tokens:
                    open_.discard(i)
            if not open_:
                break
        self.cache.end_answer(which, saved)
        for i in which:
            rows[i].answers[budget] = answer[i]
            if last:
                rows[i].tokens += answer[i]
                rows[i].phase, rows[i].finish = "done", "budget"

    def _result(self, row: _Row, config: GenerationConfig) -> Sample:
        """Answers per budget: forced ones where the row was still thinking, else its natural ending
        (the text from the closing tag on, or the whole text when it stopped with EOS)."""
        answers: dict[int, list[int]] = {}
        for budget in config.budgets:
            if budget in row.answers:
                answers[budget] = row.answers[budget]
            elif row.natural_at is not None and row.natural_at <= budget:
                answers[budget] = row.tokens[row.natural_at - 1 :] if row.closed else list(row.tokens)
        if row.natural_at is not None:
            thinking = row.natural_at - 1
        else:
            thinking = config.budgets[-1]
        return Sample(
            token_ids=row.tokens,
            text=self._decode(row.tokens),
            finish_reason=row.finish,
            thinking_tokens=thinking,
            answers={t: self._decode(ids) for t, ids in answers.items()},
            answer_token_ids=answers,
        )

    def _decode(self, ids: list[int]) -> str:
        # no clean-up: it is meant for WordPiece and only strips spaces from BPE output
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _eos_ids(tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<｜end▁of▁sentence｜>"):
        if token in tokenizer.get_vocab():
            ids.add(tokenizer.convert_tokens_to_ids(token))
    return ids
