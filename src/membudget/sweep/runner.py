"""Running a sweep: one loaded model per (model, weights), one generation per (KV, task, problem).

Each generation samples the largest G of the sweep up to its largest budget, with budget checkpoints
at every smaller budget; smaller G are scored from its first samples (scoring.py's exact Maj@k).
Rows go to the store one problem at a time; a rerun skips every problem whose rows are complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..memory import Scenario, breakdown
from ..scoring import Score
from ..spec import resolve_spec
from ..tasks import Problem, chat_prompt, get_task
from .batching import Batch, answer_slots, fit_batch, prompt_tokens
from .config import SweepConfig
from .estimate import GroupPlan, group_plan
from .store import GenerationRecord, SampleRow, Store, scenario_score


@dataclass(frozen=True, slots=True)
class Unit:
    """One problem's generation: everything a worker needs besides the loaded model."""

    model: str
    weights: int
    kv: str
    task: str
    run_key: str
    problem: Problem


@dataclass(frozen=True, slots=True)
class Group:
    """All units that share one loaded model, and the generation size of each (KV policy, task)."""

    model: str
    weights: int
    units: tuple[Unit, ...]
    batches: tuple[tuple[str, str, Batch], ...] = ()  # (kv, task, batch); none: config.batch problems

    def batch(self, kv: str, task: str, default: int | str) -> Batch:
        for k, t, b in self.batches:
            if (k, t) == (kv, task):
                return b
        count = default if isinstance(default, int) else 1  # "auto" without a memory to fill: one
        return Batch(count, 0, 1, 0)


def problem_seed(seed: int, task: str, problem_id: str) -> int:
    """The generation seed of a problem: the same for every model and KV policy (paired comparisons)."""
    digest = hashlib.sha256(f"{seed}:{task}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def sweep_id(config: SweepConfig) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def longest_prompts(config: SweepConfig, problems: dict[str, list[Problem]]) -> dict[str, int]:
    """Task -> the estimated tokens of its longest prompt (batching.prompt_tokens: before any tokenizer)."""
    return {
        task.name: max(prompt_tokens(get_task(task.name).prompt(p)) for p in problems[task.name])
        for task in config.tasks
    }


def size_generations(
    config: SweepConfig, problems: dict[str, list[Problem]], memory_bytes: int | None
) -> dict[tuple[str, int], tuple[tuple[str, str, Batch], ...]]:
    """(model, weights) -> the generation size of each (KV policy, task) under `memory_bytes` (a GPU's;
    batching.fit_batch); none without a memory to fill. A scenario that cannot fit at all raises
    FitError here, before anything loads."""
    if memory_bytes is None:
        return {}
    sizes = {}
    prompts = longest_prompts(config, problems)
    for model in config.models:
        spec = resolve_spec(model)
        for weights in config.weights:
            sizes[model, weights] = tuple(
                (
                    kv,
                    task.name,
                    fit_batch(
                        spec,
                        weights,
                        kv,
                        config.budgets[-1],
                        config.max_samples,
                        prompts[task.name],
                        config.generation.answer_tokens,
                        memory_bytes,
                        len(problems[task.name]),
                        config.batch,
                    ),
                )  # fmt: skip
                for kv in config.kv
                for task in config.tasks
            )
    return sizes


def plan(
    config: SweepConfig,
    problems: dict[str, list[Problem]],
    store: Store | None = None,
    sizes: dict[tuple[str, int], tuple[tuple[str, str, Batch], ...]] | None = None,
) -> list[Group]:
    """Groups of units still to run (complete problems in `store` are left out), each with its
    generation sizes from `size_generations` (none: `config.batch` problems)."""
    expected = config.max_samples * len(config.budgets)
    groups = []
    for model in config.models:
        for weights in config.weights:
            units = []
            for kv in config.kv:
                for task in config.tasks:
                    key = config.settings_key(task.name)
                    done = (
                        store.done_problems(key, model, weights, kv, task.name, expected) if store else set()
                    )
                    units += [
                        Unit(model, weights, kv, task.name, key, p)
                        for p in problems[task.name]
                        if p.id not in done
                    ]
            if units:
                groups.append(Group(model, weights, tuple(units), (sizes or {}).get((model, weights), ())))
    return groups


def group_plans(
    config: SweepConfig, problems: dict[str, list[Problem]], groups: list[Group]
) -> list[GroupPlan]:
    """Each group's generations per (KV policy, task), as `plan` sized them, for the time estimates."""
    prompts = longest_prompts(config, problems)
    answer = answer_slots(config.generation.answer_tokens)
    plans = []
    for group in groups:
        for kv in config.kv:
            for task in config.tasks:
                count = sum(1 for u in group.units if (u.kv, u.task) == (kv, task.name))
                if count:
                    batch = group.batch(kv, task.name, config.batch)
                    plans.append(group_plan(group.model, group.weights, kv, task.name, count, batch,
                                            config.max_samples, prompts[task.name], config.budgets, answer))  # fmt: skip
    return plans


def planned_tokens(config: SweepConfig, problems: dict[str, list[Problem]], groups: list[Group]) -> int:
    """Tokens the groups' generations decode if every row runs to its last step (progress's bound)."""
    return sum(p.generations * p.rows * p.steps for p in group_plans(config, problems, groups))


def record_plan(config: SweepConfig, store: Store) -> str:
    """Write the sweep, its run settings and its scenario grid (with memory) to the store."""
    sid = sweep_id(config)
    store.add_sweep(sid, config.name, config.to_dict())
    rows = []
    specs = {model: resolve_spec(model) for model in config.models}
    for task in config.tasks:
        key = config.settings_key(task.name)
        t = get_task(task.name)
        store.add_run(
            key,
            task.name,
            {
                "config": config.to_dict(),
                "template": t.template,
                "answer_prefix": config.generation.answer_prefix or t.answer_prefix,
            },
        )
        for scenario in config.scenarios():
            b = breakdown(specs[scenario.model], scenario)
            rows.append(
                (
                    sid,
                    key,
                    scenario.model,
                    scenario.weights,
                    scenario.kv,
                    task.name,
                    scenario.tokens,
                    scenario.samples,
                    b.weights_bytes,
                    b.kv_bytes,
                    b.workspace_bytes,
                    b.total_bytes,
                )
            )
    store.add_scenarios(rows)
    return sid


def resolve_device(config: SweepConfig) -> tuple[str, str]:
    """(device, dtype) a sweep runs with here; `device = "cuda"` without a GPU is refused."""
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            'the sweep file says device = "cuda", but torch sees no CUDA GPU; set device = "cpu" or "auto"'
        )
    device = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    from ..engine.load import default_dtype

    dtype = config.dtype if config.dtype != "auto" else default_dtype(device)
    return device, dtype


def run_group(
    config: SweepConfig, group: Group, on_step=None
) -> Iterator[GenerationRecord | list[SampleRow]]:
    """Load the group's model once; yield each generation's record (GenerationRecord) as it ends and
    then each of its problems' rows. `on_step(rows)` is called after every decode step with the rows
    it advanced (progress)."""
    from ..engine.generate import GenerationConfig, Generator
    from ..engine.load import load_model

    device, dtype = resolve_device(config)
    loaded = load_model(group.model, dtype, device, weights=group.weights)
    tok = loaded.tokenizer
    generator = Generator(loaded.decoder, tok, on_step=on_step)
    gen = config.generation
    for batch in _batches(group, config.batch):
        first = batch[0]
        task = get_task(first.task)
        prompts, seeds = [], []
        for unit in batch:
            text = task.prompt(unit.problem)
            if tok.chat_template:
                text = chat_prompt(tok, text, gen.thinking)
            prompts.append(tok.encode(text, add_special_tokens=not tok.chat_template))
            seeds.append(problem_seed(config.seed, unit.task, unit.problem.id))
        passes = group.batch(first.kv, first.task, config.batch).passes
        per_pass = -(-config.max_samples // passes)
        results: list[list] = [[] for _ in batch]
        for start in range(0, config.max_samples, per_pass):  # one pass unless G rows do not fit
            settings = GenerationConfig(
                config.budgets,
                min(per_pass, config.max_samples - start),
                gen.answer_tokens,
                gen.answer_prefix or task.answer_prefix,
                gen.budget_forcing,
                gen.wait_text,
                config.sampling,
                kv=first.kv,
                first_sample=start,
            )
            for mine, theirs in zip(results, generator.generate_batch(prompts, settings, seeds), strict=True):
                mine.extend(theirs)
            yield _record(batch, prompts, settings, generator, loaded.spec)
        for unit, seed, samples in zip(batch, seeds, results, strict=True):
            yield _rows(unit, seed, samples, config, task, generator)


def _record(batch: list[Unit], prompts: list[list[int]], settings, generator, spec) -> GenerationRecord:
    """What a generation held and used, beside what `membudget memory` accounts for that batch."""
    first, longest = batch[0], max(len(p) for p in prompts)
    rows = len(batch) * settings.samples
    capacity = generator.capacity(longest, settings)
    scenario = Scenario(first.model, first.weights, first.kv, capacity - longest, rows, longest,
                        answer_slots=generator.answer_slots(settings))  # fmt: skip
    return GenerationRecord(
        first.run_key, first.model, first.weights, first.kv, first.task, ",".join(u.problem.id for u in batch),
        settings.first_sample, rows, longest, generator.peak_memory_bytes or None,
        breakdown(spec, scenario).total_bytes, generator.timings.decode_s,
    )  # fmt: skip


def _batches(group: Group, default: int | str) -> Iterator[list[Unit]]:
    """Consecutive units of the same KV policy and task, as many as the group's batch for them."""
    batch: list[Unit] = []
    for unit in group.units:
        if batch and (
            len(batch) == group.batch(batch[0].kv, batch[0].task, default).problems
            or (unit.kv, unit.task) != (batch[0].kv, batch[0].task)
        ):
            yield batch
            batch = []
        batch.append(unit)
    if batch:
        yield batch


def _rows(unit: Unit, seed: int, results, config: SweepConfig, task, generator) -> list[SampleRow]:
    """The store rows of one problem's samples: one per (sample, budget)."""
    rows = []
    for index, sample in enumerate(results):
        for budget in config.budgets:
            answer = sample.answers.get(budget, "")
            extracted = task.extract(answer)
            forced = sample.thinking_tokens >= budget
            rows.append(
                SampleRow(
                    unit.run_key,
                    unit.model,
                    unit.weights,
                    unit.kv,
                    unit.task,
                    unit.problem.id,
                    index,
                    budget,
                    seed,
                    unit.problem.answer,
                    answer,
                    extracted,
                    task.grade(extracted, unit.problem.answer),
                    min(budget, sample.thinking_tokens),
                    len(sample.answer_token_ids.get(budget, [])),
                    "budget" if forced else sample.finish_reason,
                    generator.timings.prefill_s,
                    generator.timings.decode_s,
                    generator.peak_memory_bytes or None,
                )
            )
    return rows


def run_local(
    config: SweepConfig,
    groups: list[Group],
    store: Store,
    on_problem: Callable[[list[SampleRow]], None] = lambda rows: None,
    on_step: Callable[[int], None] | None = None,
) -> int:
    """Run every group in this process; returns the number of new rows. `on_step(rows)` follows every
    decode step with the rows it advanced (progress between problems)."""
    written = 0
    for group in groups:
        for item in run_group(config, group, on_step):
            written += store_item(store, item, on_problem)
    return written


def store_item(store: Store, item, on_problem) -> int:
    """Write what run_group yielded: a generation's record, or a problem's rows (then `on_problem`)."""
    if isinstance(item, GenerationRecord):
        store.add_generation(item)
        return 0
    written = store.add_samples(item)
    on_problem(item)
    return written


@dataclass(frozen=True, slots=True)
class ScenarioScore:
    model: str
    weights: int
    kv: str
    task: str
    budget: int
    samples: int
    score: Score
    total_bytes: int


def scenario_scores(config: SweepConfig, store: Store) -> list[ScenarioScore]:
    """pass@1 (G = 1) or Maj@G for every scenario of the sweep, from the stored rows."""
    out = []
    sid = sweep_id(config)
    scenarios = store.db.execute(
        "SELECT run_key, model, weights, kv, task, budget, samples, total_bytes FROM scenarios WHERE sweep_id=? "
        "ORDER BY task, total_bytes",
        (sid,),
    ).fetchall()
    for run_key, model, weights, kv, task, budget, samples, total in scenarios:
        s = scenario_score(store.db, run_key, model, weights, kv, task, budget, samples)
        if s is not None:
            out.append(ScenarioScore(model, weights, kv, task, budget, samples, s, total))
    return out
