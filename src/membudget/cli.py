"""The `membudget` command (DESIGN.md §4). Errors: one line on stderr, exit status 2."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .fit import DEFAULT_KV, DEFAULT_SAMPLES, DEFAULT_TOKENS, BudgetError, Grid, fit
from .memory import GIB, WEIGHT_BITS, MemoryBreakdown, PolicyError, Scenario, breakdown, parse_size
from .memory import kv_bytes_per_token as _kv_per_token
from .spec import SpecError, resolve_spec
from .tasks.prompts import MATH_ANSWER_PREFIX

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Where should the bytes go? Memory budgets for reasoning models.",
)
# piped output is not squeezed to 80 columns: tables stay one row per scenario
out = Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err_console = Console(stderr=True)

CONVENTION_NOTE = {
    "all": "convention 'all': weights + KV of prompt and generated tokens (each sample holds its own "
    "copy) + workspace estimate",
    "study": "convention 'study' (arXiv 2510.10964): weights + KV of generated tokens only, no workspace",
}
UNITS_NOTE = (
    "GiB = 2^30 bytes. 8/4-bit weights: groups of 128 with a 16-bit scale and a b-bit zero; "
    "embeddings, norms, LM head in bf16.\n"
    "quant:Q KV: groups of 64 with a 16-bit scale and zero, plus a 128-token bf16 residual. "
    "Eviction NAME:B: B tokens plus the policy's slack."
)

ModelOpt = Annotated[
    list[str],
    typer.Option(
        "--model",
        "-m",
        help="Hub id, registry alias, local dir, config.json or .gguf; repeat for several models",
    ),
]
ConventionOpt = Annotated[str, typer.Option(help="'all' (prompt KV + workspace counted) or 'study'")]
PromptOpt = Annotated[int, typer.Option("--prompt-tokens", help="Prompt length P")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _gib(n: int) -> str:
    return f"{n / GIB:,.3f}"


@app.command()
def memory(
    model: ModelOpt,
    weights: Annotated[
        list[int] | None, typer.Option(help="Weight bits: 16, 8 or 4; repeatable (default: 16)")
    ] = None,
    kv: Annotated[
        list[str] | None,
        typer.Option(
            help="KV policy: full, quant:8, rkv:4096, rkv:4096+quant:8, ...; repeatable (default: full)"
        ),
    ] = None,
    tokens: Annotated[int, typer.Option(help="Token budget T (generated tokens per sample)")] = 30000,
    samples: Annotated[int, typer.Option(help="Parallel samples G")] = 1,
    prompt_tokens: PromptOpt = 0,
    convention: ConventionOpt = "all",
    as_json: JsonOpt = False,
) -> None:
    """Bytes of weights, KV cache and workspace for one scenario (or a table over several)."""
    specs = {spec.name: spec for spec in map(resolve_spec, model)}
    rows = [
        breakdown(spec, Scenario(name, w, k, tokens, samples, prompt_tokens, convention))
        for name, spec in specs.items()
        for w in weights or [16]
        for k in kv or ["full"]
    ]
    if as_json:
        payload = [r.to_dict() for r in rows]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    if len(rows) == 1:
        _print_one(rows[0], specs[rows[0].model])
    else:
        _print_table(rows, f"Memory, T={tokens:,} tokens, G={samples}")
    _print_notes(convention)


def _print_notes(convention: str) -> None:
    out.print(f"[dim]{CONVENTION_NOTE[convention]}.\n{UNITS_NOTE}[/dim]", soft_wrap=True)


def _print_one(row: MemoryBreakdown, spec) -> None:
    table = Table(
        title=f"{row.model}  weights {row.weights}-bit  KV {row.kv}  T={row.tokens:,}  "
        f"G={row.samples}  P={row.prompt_tokens:,}"
    )
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("GiB", justify="right")
    table.add_column("how", style="dim")
    table.add_row(
        "weights",
        f"{row.weights_bytes:,}",
        _gib(row.weights_bytes),
        f"{spec.quantizable_params:,} quantizable + {spec.kept_params:,} bf16 params",
    )
    table.add_row(
        "KV cache",
        f"{row.kv_bytes:,}",
        _gib(row.kv_bytes),
        f"{row.samples} x {row.kv_tokens_per_sequence:,} tokens x {_kv_per_token(spec):,.0f} B/token at bf16",
    )
    table.add_row(
        "workspace",
        f"{row.workspace_bytes:,}",
        _gib(row.workspace_bytes),
        "activations, sampling, RoPE, GPU runtime (calibrated)" if row.workspace_bytes else "not counted",
    )
    table.add_row("total", f"{row.total_bytes:,}", _gib(row.total_bytes), "", style="bold")
    out.print(table)


def _print_table(rows: list[MemoryBreakdown], title: str) -> None:
    table = Table(title=title)
    for name in ("model", "weights", "KV", "T", "G", "weights GiB", "KV GiB", "work GiB", "total GiB"):
        table.add_column(name, justify="left" if name in ("model", "KV") else "right")
    for r in rows:
        table.add_row(
            r.model.split("/")[-1],
            f"{r.weights}-bit",
            r.kv,
            f"{r.tokens:,}",
            str(r.samples),
            _gib(r.weights_bytes),
            _gib(r.kv_bytes),
            _gib(r.workspace_bytes),
            _gib(r.total_bytes),
        )
    out.print(table)


def _csv(values) -> str:
    return ",".join(map(str, values))


def _split_ints(values: list[str], what: str) -> list[int]:
    try:
        return [int(v) for item in values for v in item.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {values}") from None


@app.command("fit")
def fit_cmd(
    memory_size: Annotated[str, typer.Option("--memory", help="Budget: 24GiB, 24GB (decimal), 24G = GiB")],
    model: ModelOpt,
    weights: Annotated[list[str] | None, typer.Option(help="Weight bits to try (default: 16,8,4)")] = None,
    kv: Annotated[
        list[str] | None, typer.Option(help=f"KV policies to try (default: {','.join(DEFAULT_KV)})")
    ] = None,
    tokens: Annotated[
        list[str] | None, typer.Option(help=f"Token budgets (default: {_csv(DEFAULT_TOKENS)})")
    ] = None,
    samples: Annotated[
        list[str] | None, typer.Option(help=f"Sample counts (default: {_csv(DEFAULT_SAMPLES)})")
    ] = None,
    prompt_tokens: PromptOpt = 0,
    convention: ConventionOpt = "all",
    limit: Annotated[int, typer.Option(help="Show at most this many rows (0 = all)")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Every scenario of the given models that fits in --memory, sorted by total bytes."""
    budget = parse_size(memory_size)
    grid = Grid(
        _split_ints(weights, "--weights") if weights else WEIGHT_BITS,
        [k for item in kv for k in item.split(",")] if kv else DEFAULT_KV,
        _split_ints(tokens, "--tokens") if tokens else DEFAULT_TOKENS,
        _split_ints(samples, "--samples") if samples else DEFAULT_SAMPLES,
        prompt_tokens,
        convention,
    )
    rows = fit([resolve_spec(m) for m in model], budget, grid)
    shown = rows[:limit] if limit > 0 else rows
    if as_json:
        print(json.dumps([r.to_dict() for r in shown], indent=2))
        return
    total = sum(1 for m in model for _ in grid.scenarios(m))
    _print_table(shown, f"Scenarios within {budget / GIB:,.2f} GiB ({len(rows)} of {total} fit)")
    if len(shown) < len(rows):
        out.print(f"[dim]showing {len(shown)} of {len(rows)}; --limit 0 shows all[/dim]")
    _print_notes(convention)


def _budgets(max_tokens: int, budgets: str | None) -> tuple[int, ...]:
    if not budgets:
        return (max_tokens,)
    try:
        return tuple(int(b) for b in budgets.split(","))
    except ValueError:
        raise ValueError(f"--budgets must be whole numbers separated by commas, got {budgets!r}") from None


@app.command()
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local dir, .gguf file, or smollm2")],
    prompt: Annotated[str, typer.Option(help="The user message (or raw text with --raw)")],
    raw: Annotated[bool, typer.Option(help="Tokenize the prompt as is, without the chat template")] = False,
    thinking: Annotated[bool, typer.Option(help="Thinking mode in the chat template (Qwen3)")] = True,
    samples: Annotated[int, typer.Option(help="Parallel samples G (one shared prefill)")] = 1,
    max_tokens: Annotated[int, typer.Option(help="Thinking budget T")] = 512,
    budgets: Annotated[
        str | None, typer.Option(help="Budget checkpoints T1,T2,... (overrides --max-tokens)")
    ] = None,
    answer_prefix: Annotated[
        str, typer.Option(help="Forced after the thinking at the budget")
    ] = MATH_ANSWER_PREFIX,
    answer_tokens: Annotated[int, typer.Option(help="Answer tokens A after the forced prefix")] = 32,
    budget_forcing: Annotated[
        bool, typer.Option(help="Replace an early end of thinking with --wait-text")
    ] = True,
    wait_text: Annotated[str, typer.Option(help="What replaces an early end of thinking")] = "Wait",
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 20,
    min_p: float = 0.0,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding (ignores the sampling options)")] = False,
    seed: int = 0,
    dtype: Annotated[
        str | None, typer.Option(help="bfloat16 (GPU default), float32 (CPU default), float16")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cuda or cpu (default: cuda when available)")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own Python code")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate G samples with budget forcing and answers at every budget checkpoint."""
    import time

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .engine.generate import GenerationConfig, Generator
    from .engine.load import load_model
    from .engine.sampling import SamplingParams
    from .tasks import chat_prompt

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
    sampling = SamplingParams(temperature, top_p, top_k, min_p, greedy)
    config = GenerationConfig(
        _budgets(max_tokens, budgets),
        samples,
        answer_tokens,
        answer_prefix,
        budget_forcing,
        wait_text,
        sampling,
        seed,
    )
    t0 = time.perf_counter()
    loaded = load_model(
        model, dtype or ("bfloat16" if device.startswith("cuda") else "float32"), device, trust_remote_code
    )
    load_s = time.perf_counter() - t0
    tok = loaded.tokenizer
    text = prompt if raw else chat_prompt(tok, prompt, thinking)
    ids = tok.encode(text, add_special_tokens=raw)
    with Progress(
        "decoding",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("steps", total=None)
        gen = Generator(loaded.decoder, tok, on_step=lambda: bar.advance(task))
        bar.update(task, total=gen.max_steps(config))
        results = gen.generate(ids, config)
    capacity = gen.capacity(len(ids), config)
    accounted = breakdown(loaded.spec, Scenario(model, 16, "full", capacity - len(ids), samples, len(ids)))
    payload = {
        "samples": [
            {
                "text": r.text,
                "token_ids": r.token_ids,
                "finish_reason": r.finish_reason,
                "thinking_tokens": r.thinking_tokens,
                "answers": {str(t): a for t, a in r.answers.items()},
            }
            for r in results
        ],
        "prompt_tokens": len(ids),
        "peak_memory_bytes": gen.peak_memory_bytes or None,
        "accounted_bytes": accounted.total_bytes,
        "accounted_note": "membudget memory for this scenario at bf16 weights and KV, convention 'all'",
        "timings": {
            "load_s": load_s,
            "prefill_s": gen.timings.prefill_s,
            "decode_s": gen.timings.decode_s,
            "decode_steps": gen.timings.steps,
        },
    }
    if as_json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for i, r in enumerate(results):
        out.rule(f"sample {i} ({r.finish_reason}, {r.thinking_tokens} thinking tokens)")
        out.print(r.text, markup=False, highlight=False)
        for t, answer in r.answers.items():
            out.print(f"[bold]answer at T={t}:[/bold] ", end="")
            out.print(answer.strip(), markup=False, highlight=False)
    steps = max(gen.timings.steps, 1)
    out.print(
        f"[dim]prefill {gen.timings.prefill_s:.2f} s; {steps} decode steps in {gen.timings.decode_s:.2f} s "
        f"({1e3 * gen.timings.decode_s / steps:.1f} ms/step, {samples} rows)[/dim]"
    )


@app.command()
def bench(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Registry model(s) (random weights)")
    ] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, e.g. 1,16")] = "1,16",
    context: Annotated[int, typer.Option(help="Tokens in the cache when the step is timed")] = 8192,
    hf: Annotated[bool, typer.Option(help="Also time transformers generate() at batch 1")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Decode-step speed and memory of the engine on random weights of real shapes (needs a CUDA GPU)."""
    import torch

    from .bench import bench_engine, bench_transformers, copy_bandwidth

    if not torch.cuda.is_available():
        raise ValueError("membudget bench times CUDA graphs and needs a CUDA GPU; none is visible")
    bandwidth = copy_bandwidth(torch.device("cuda"))
    rows = []
    for name in model or ["Qwen/Qwen3-8B"]:
        spec = resolve_spec(name)
        for g in _split_ints([batch], "--batch"):
            row = bench_engine(spec, g, context, bandwidth)
            if g == 1 and hf:
                row.hf_ms_per_step = bench_transformers(spec, 1, context)
                row.speedup_vs_hf = row.hf_ms_per_step / row.ms_per_step
            rows.append(row)
    if as_json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    table = Table(
        title=f"Decode step, bf16, {context:,} tokens of context (copy bandwidth {bandwidth / 1e9:,.0f} GB/s)"
    )
    for col in (
        "model",
        "G",
        "ms/step",
        "tokens/s",
        "HBM bound ms",
        "% of bound",
        "HF ms/step",
        "peak GiB",
        "accounted GiB",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r.model.split("/")[-1],
            str(r.batch),
            f"{r.ms_per_step:.3f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.hbm_bound_ms:.3f}",
            f"{r.pct_of_bound:.1f}",
            f"{r.hf_ms_per_step:.1f}" if r.hf_ms_per_step else "-",
            _gib(r.peak_bytes),
            _gib(r.accounted_bytes),
        )
    out.print(table)


def main() -> None:
    """Entry point: usage errors (click) and input errors both end with one line on stderr, exit 2."""
    try:
        app()
    except (SpecError, PolicyError, BudgetError, ValueError) as err:
        print(f"membudget: error: {err}", file=sys.stderr)
        sys.exit(2)
