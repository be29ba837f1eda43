"""`membudget memory` and `membudget fit`: the accounting, as tables or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..fit import DEFAULT_KV, DEFAULT_SAMPLES, DEFAULT_TOKENS, Grid, fit
from ..memory import GIB, WEIGHT_BITS, MemoryBreakdown, Scenario, breakdown, parse_size
from ..memory import kv_bytes_per_token as _kv_per_token
from ..spec import resolve_spec
from .common import (
    ConventionOpt,
    JsonOpt,
    ModelOpt,
    PromptOpt,
    app,
    csv,
    gib,
    out,
    scenario_cells,
    split_ints,
    split_list,
)

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


@app.command()
def memory(
    model: ModelOpt,
    weights: Annotated[
        list[str] | None, typer.Option(help="Weight bits: 16, 8 or 4; a list (8,4) or repeated (default: 16)")
    ] = None,
    kv: Annotated[
        list[str] | None,
        typer.Option(
            help="KV policy: full, quant:8, rkv:4096, rkv:4096+quant:8, ...; a list or repeated (default: full)"
        ),
    ] = None,
    tokens: Annotated[int, typer.Option(help="Token budget T (generated tokens per sample)")] = 30000,
    samples: Annotated[int, typer.Option(help="Parallel samples G")] = 1,
    prompt_tokens: PromptOpt = 0,
    convention: ConventionOpt = "all",
    as_json: JsonOpt = False,
) -> None:
    """Bytes of weights, KV cache and workspace for one scenario (or a table over several).

    Example: membudget memory --model Qwen/Qwen3-8B --weights 8,4 --kv full,rkv:4096 --tokens 30000
    """
    if tokens < 1:
        raise ValueError(f"--tokens must be a positive token budget, not {tokens}")
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, not {samples}")
    specs = {spec.name: spec for spec in map(resolve_spec, model)}
    rows = [
        breakdown(spec, Scenario(name, w, k, tokens, samples, prompt_tokens, convention))
        for name, spec in specs.items()
        for w in (split_ints(weights, "--weights") if weights else [16])
        for k in (split_list(kv) if kv else ["full"])
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
        gib(row.weights_bytes),
        f"{spec.quantizable_params:,} quantizable + {spec.kept_params:,} bf16 params",
    )
    table.add_row(
        "KV cache",
        f"{row.kv_bytes:,}",
        gib(row.kv_bytes),
        f"{row.samples} x {row.kv_tokens_per_sequence:,} tokens x {_kv_per_token(spec):,.0f} B/token at bf16",
    )
    table.add_row(
        "workspace",
        f"{row.workspace_bytes:,}",
        gib(row.workspace_bytes),
        "activations, sampling, RoPE, GPU runtime (calibrated)" if row.workspace_bytes else "not counted",
    )
    table.add_row("total", f"{row.total_bytes:,}", gib(row.total_bytes), "", style="bold")
    out.print(table)


def _print_table(rows: list[MemoryBreakdown], title: str) -> None:
    table = Table(title=title)
    for name in ("model", "weights", "KV", "T", "G", "weights GiB", "KV GiB", "work GiB", "total GiB"):
        table.add_column(name, justify="left" if name in ("model", "KV") else "right")
    for r in rows:
        table.add_row(
            *scenario_cells(r),
            gib(r.weights_bytes),
            gib(r.kv_bytes),
            gib(r.workspace_bytes),
            gib(r.total_bytes),
        )
    out.print(table)


@app.command("fit")
def fit_cmd(
    memory_size: Annotated[str, typer.Option("--memory", help="Budget: 24GiB, 24GB (decimal), 24G = GiB")],
    model: ModelOpt,
    weights: Annotated[list[str] | None, typer.Option(help="Weight bits to try (default: 16,8,4)")] = None,
    kv: Annotated[
        list[str] | None, typer.Option(help=f"KV policies to try (default: {','.join(DEFAULT_KV)})")
    ] = None,
    tokens: Annotated[
        list[str] | None, typer.Option(help=f"Token budgets (default: {csv(DEFAULT_TOKENS)})")
    ] = None,
    samples: Annotated[
        list[str] | None, typer.Option(help=f"Sample counts (default: {csv(DEFAULT_SAMPLES)})")
    ] = None,
    prompt_tokens: PromptOpt = 0,
    convention: ConventionOpt = "all",
    limit: Annotated[int, typer.Option(help="Show at most this many rows (0 = all)")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Every scenario of the given models that fits in --memory, sorted by total bytes.

    Example: membudget fit --memory 24GiB --model Qwen/Qwen3-8B --weights 8,4 --tokens 30000
    """
    budget = parse_size(memory_size)
    grid = Grid(
        split_ints(weights, "--weights") if weights else WEIGHT_BITS,
        split_list(kv) if kv else DEFAULT_KV,
        split_ints(tokens, "--tokens") if tokens else DEFAULT_TOKENS,
        split_ints(samples, "--samples") if samples else DEFAULT_SAMPLES,
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
