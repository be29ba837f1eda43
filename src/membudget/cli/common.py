"""What the commands share: the Typer app they register on, the consoles, option types and table cells."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from ..memory import GIB
from ..spec import RANDOM

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Where should the bytes go? Memory budgets for reasoning models.",
)
# piped output is not squeezed to 80 columns: tables stay one row per scenario
out = Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err_console = Console(stderr=True)

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


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"membudget {version('membudget')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """Where should the bytes go? Memory budgets for reasoning models."""


def short_name(model: str) -> str:
    """A model's name for a table: the hub id without its organization (`random:` kept)."""
    prefix = RANDOM if model.startswith(RANDOM) else ""
    return prefix + model.removeprefix(prefix).split("/")[-1]


def duration(seconds: float) -> str:
    """`seconds` in the unit that reads best: s, min or h."""
    if seconds < 120:
        return f"{seconds:,.0f} s"
    return f"{seconds / 60:,.1f} min" if seconds < 7200 else f"{seconds / 3600:,.1f} h"


def gib(n: int) -> str:
    return f"{n / GIB:,.3f}"


def scenario_cells(r) -> list[str]:
    """Table cells for a scenario's model, weights, KV policy, token budget and samples."""
    return [short_name(r.model), f"{r.weights}-bit", r.kv, f"{r.tokens:,}", str(r.samples)]


def csv(values) -> str:
    return ",".join(map(str, values))


def split_list(values: list[str]) -> list[str]:
    """Repeated options and comma lists alike: ["full,quant:8", "rkv:4096"] -> three items."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def split_ints(values: list[str], what: str) -> list[int]:
    try:
        return [int(v) for item in values for v in item.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {values}") from None


def plural(n: int, word: str) -> str:
    """n (thousands separated) and the word, plural unless n is 1: "1,200 problems", "1 problem"."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
