"""The sweep file: TOML -> a validated SweepConfig -> scenarios and units of work.

    name = "qwen3-aime25"
    seed = 0
    models = ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B"]
    weights = [16]
    kv = ["full"]
    budgets = [2000, 6000, 10000]
    samples = [1, 4, 8]
    memory = "24GiB"            # optional: every scenario must fit
    device = "auto"             # auto, cpu, cuda
    dtype = "auto"              # auto (bf16 on GPU and CPUs with AMX/AVX512-BF16, else fp32), bfloat16, float16, float32
    batch = "auto"              # problems generated together (one cache, one step): "auto" fills the
                                # GPU's memory (sweep/batching.py; 1 problem on a CPU) or a number;
                                # results do not depend on it, throughput does

    [sampling]                  # Qwen3 thinking defaults
    temperature = 0.6
    top_p = 0.95
    top_k = 20
    min_p = 0.0
    greedy = false

    [generation]
    answer_tokens = 32
    budget_forcing = true
    wait_text = "Wait"
    thinking = true
    # answer_prefix = "..."     # default: the task's

    [[tasks]]
    name = "aime25"
    data = "aime25.jsonl"       # optional; relative to the sweep file
    limit = 30                  # optional
    columns = { question = "problem" }   # optional

Everything is checked before any work starts; an error names the key and its line in the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

from ..engine.attention import GPU_HEAD_DIMS
from ..engine.sampling import SamplingParams
from ..memory import GIB, KVPolicy, PolicyError, Scenario, breakdown, parse_size
from ..spec import SpecError, resolve_spec
from ..tasks import DataError, Problem, get_task

TOP_KEYS = {
    "name",
    "seed",
    "models",
    "weights",
    "kv",
    "budgets",
    "samples",
    "memory",
    "device",
    "dtype",
    "batch",
    "sampling",
    "generation",
    "tasks",
}
SAMPLING_KEYS = {"temperature", "top_p", "top_k", "min_p", "greedy"}
GENERATION_KEYS = {"answer_tokens", "budget_forcing", "wait_text", "thinking", "answer_prefix"}
TASK_KEYS = {"name", "data", "limit", "columns"}


class SweepError(ValueError):
    """A sweep file that cannot run: says which key, on which line, and what to do."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    data: str | None = None
    limit: int | None = None
    columns: tuple[tuple[str, str], ...] = ()

    def load(self) -> list[Problem]:
        return get_task(self.name).problems(self.data, self.limit, dict(self.columns) or None)


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    answer_tokens: int = 32
    budget_forcing: bool = True
    wait_text: str = "Wait"
    thinking: bool = True
    answer_prefix: str | None = None  # None: the task's own


@dataclass(frozen=True, slots=True)
class SweepConfig:
    models: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    budgets: tuple[int, ...]
    samples: tuple[int, ...] = (1,)
    weights: tuple[int, ...] = (16,)
    kv: tuple[str, ...] = ("full",)
    name: str = "sweep"
    seed: int = 0
    memory: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    sampling: SamplingParams = field(default_factory=SamplingParams)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    batch: int | str = "auto"  # problems per generation, or "auto" (sweep/batching.py); never in settings_key

    @property
    def max_samples(self) -> int:
        return max(self.samples)

    def scenarios(self) -> list[Scenario]:
        """Every (model, weights, KV, budget, samples) of the grid (per task: see `scenario_rows`)."""
        return [
            Scenario(m, w, kv, t, g)
            for m in self.models
            for w in self.weights
            for kv in self.kv
            for t in self.budgets
            for g in self.samples
        ]

    def settings_key(self, task: str) -> str:
        """A hash of everything besides (model, weights, kv, problem) that changes a generation: rows
        made under other settings are never mixed with these."""
        t = get_task(task)
        payload = {
            "seed": self.seed,
            "dtype": self.dtype,
            "sampling": asdict(self.sampling),
            "generation": asdict(self.generation),
            "budgets": sorted(self.budgets),
            "max_samples": self.max_samples,
            "template": t.template,
            "answer_prefix": self.generation.answer_prefix or t.answer_prefix,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)


def line_of(text: str, key: str, section: str | None = None) -> int | None:
    """The 1-based line where `key = ...` stands (inside `[section]` / `[[section]]` if given)."""
    start = 0
    lines = text.splitlines()
    if section is not None:
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(section)}\s*\]\]?\s*$")
        for i, line in enumerate(lines):
            if header.match(line):
                start = i
                break
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return None


def _fail(path: Path, text: str, key: str, message: str, section: str | None = None):
    line = line_of(text, key, section)
    where = f"{path}:{line}" if line else str(path)
    shown = f"{section}.{key}" if section else key
    raise SweepError(f"{where}: {shown}: {message}")


def load_sweep(path: str | Path, check_models: bool = True) -> tuple[SweepConfig, dict[str, list[Problem]]]:
    """Read, validate and expand a sweep file. Returns the config and every task's problems."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SweepError(f"{path}: cannot read the sweep file ({err.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{path}: not valid TOML: {err}") from None
    return parse_sweep(raw, path, text, check_models)


def parse_sweep(
    raw: dict, path: Path, text: str = "", check_models: bool = True, flags: dict[str, str] | None = None
):
    """Validate a sweep's settings (`raw`, as read from `path`). `flags`: for a command line that built
    `raw` (`membudget eval`), the option that set each key, which errors then name instead."""

    def fail(key, message, section=None):
        if flags is not None:
            raise SweepError(f"{flags.get(key, key)}: {message}")
        _fail(path, text, key, message, section)

    for key in raw:
        if key not in TOP_KEYS:
            fail(key, f"unknown key; known keys: {', '.join(sorted(TOP_KEYS))}")
    for key in ("models", "budgets", "tasks"):
        if key not in raw:
            raise SweepError(f"{path}: missing required key {key!r}")

    def str_list(key):
        value = raw.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            fail(key, "expected a non-empty list of strings")
        if len(set(value)) != len(value):
            fail(key, "has duplicates: list each once")
        return tuple(value)

    def int_list(key, default, allowed=None):
        value = raw.get(key, list(default))
        if not isinstance(value, list) or not value or not all(isinstance(v, int) and v > 0 for v in value):
            fail(key, "expected a non-empty list of positive whole numbers")
        if len(set(value)) != len(value):
            fail(key, "has duplicates")
        if allowed is not None and any(v not in allowed for v in value):
            fail(key, f"must be among {', '.join(map(str, allowed))}")
        return tuple(sorted(value))

    models = str_list("models")
    weights = int_list("weights", (16,), (16, 8, 4))
    kv = str_list("kv") if "kv" in raw else ("full",)
    for policy in kv:
        try:
            KVPolicy.parse(policy)
        except PolicyError as err:
            fail("kv", str(err))
    budgets = int_list("budgets", ())
    samples = int_list("samples", (1,))
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        fail("seed", "expected a whole number >= 0")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        fail("name", "expected a non-empty string")
    device = raw.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        fail("device", "expected auto, cpu or cuda")
    dtype = raw.get("dtype", "auto")
    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        fail("dtype", "expected auto, bfloat16, float16 or float32")
    batch = raw.get("batch", "auto")
    if batch != "auto" and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        fail("batch", 'expected "auto" (as many problems as the GPU holds) or a whole number >= 1')
    memory = None
    if "memory" in raw:
        try:
            memory = parse_size(str(raw["memory"]))
        except ValueError as err:
            fail("memory", str(err))

    sampling_raw = _section(raw, "sampling", SAMPLING_KEYS, fail)
    try:
        sampling = SamplingParams(**sampling_raw)
    except (TypeError, ValueError) as err:
        named = [k for k in sampling_raw if k.replace("_", "-") in str(err) or k in str(err)]
        fail(named[0] if named else next(iter(sampling_raw), "temperature"), str(err), "sampling")
    gen_raw = _section(raw, "generation", GENERATION_KEYS, fail)
    generation = GenerationSettings(**gen_raw)
    if not isinstance(generation.answer_tokens, int) or generation.answer_tokens < 1:
        fail("answer_tokens", "expected a whole number >= 1", "generation")

    tasks_raw = raw["tasks"]
    if not isinstance(tasks_raw, list) or not tasks_raw:
        fail("tasks", "expected one or more [[tasks]] tables")
    tasks = []
    for entry in tasks_raw:
        for key in entry:
            if key not in TASK_KEYS:
                fail(key, f"unknown key in [[tasks]]; known: {', '.join(sorted(TASK_KEYS))}", "tasks")
        if "name" not in entry:
            raise SweepError(f"{path}: a [[tasks]] table has no name")
        data = entry.get("data")
        if data is not None:
            data = str((path.parent / data).resolve()) if not Path(data).is_absolute() else data
        limit = entry.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            fail("limit", "expected a positive whole number", "tasks")
        columns = tuple(sorted((entry.get("columns") or {}).items()))
        tasks.append(TaskSpec(entry["name"], data, limit, columns))
    if len({t.name for t in tasks}) != len(tasks):
        fail("name", "each task may appear once", "tasks")

    config = SweepConfig(
        models,
        tuple(tasks),
        budgets,
        samples,
        weights,
        kv,
        name,
        seed,
        memory,
        device,
        dtype,
        sampling,
        generation,
        batch,
    )
    problems: dict[str, list[Problem]] = {}
    for task in tasks:
        try:
            problems[task.name] = task.load()
        except DataError as err:
            hint = (
                {"data": "pass a local copy with --data FILE", "columns": "use a sweep file to map columns"}
                if flags is not None
                else {"data": 'give a local copy with data = "FILE" in its [[tasks]] entry',
                      "columns": 'map columns with columns = {question = "..."} in its [[tasks]] entry'}
            )  # fmt: skip
            fail("data" if task.data and err.fix == "data" else "name", err.hint(hint), "tasks")
    if check_models:
        specs = {}
        for model in models:
            try:
                specs[model] = resolve_spec(model)
            except SpecError as err:
                fail("models", str(err))
            if on_gpu(device) and specs[model].head_dim not in GPU_HEAD_DIMS:
                fail(
                    "models",
                    f"{model} has head_dim {specs[model].head_dim}; the GPU kernels take head_dim "
                    f'{" or ".join(map(str, GPU_HEAD_DIMS))}: run it with device = "cpu"',
                )
        if memory is not None:
            for scenario in config.scenarios():
                need = breakdown(specs[scenario.model], scenario).total_bytes
                if need > memory:
                    fail(
                        "memory",
                        f"scenario {scenario.model} {scenario.weights}-bit {scenario.kv} "
                        f"T={scenario.tokens} G={scenario.samples} needs {need / GIB:.2f} GiB, more than "
                        f"{memory / GIB:.2f} GiB; drop it or raise memory",
                    )
    return config, problems


def on_gpu(device: str) -> bool:
    """Whether a sweep's `device` setting means CUDA here."""
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def _section(raw: dict, name: str, keys: set[str], fail) -> dict:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        fail(name, "expected a table")
    for key in section:
        if key not in keys:
            fail(key, f"unknown key in [{name}]; known: {', '.join(sorted(keys))}", name)
    return dict(section)
