"""The `membudget` command (DESIGN.md §4). Errors: one line on stderr, exit status 2.

Commands live beside this file, one module per theme: memory.py (memory, fit), generate.py
(generate, bench), sweep.py (sweep, eval), plan.py (plan), report.py (report).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from ..fit import BudgetError
from ..memory import GIB, PolicyError
from ..spec import SpecError

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


def gib(n: int) -> str:
    return f"{n / GIB:,.3f}"


def scenario_cells(r) -> list[str]:
    """Table cells for a scenario's model, weights, KV policy, token budget and samples."""
    return [r.model.split("/")[-1], f"{r.weights}-bit", r.kv, f"{r.tokens:,}", str(r.samples)]


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


def main() -> None:
    """Entry point: usage errors (click) and input errors both end with one line on stderr, exit 2."""
    try:  # typer >= 0.2x carries its own copy of click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:
        from click.exceptions import NoArgsIsHelpError, UsageError
    from typer import Abort

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as err:
        print(err.ctx.get_help())
        sys.exit(2)
    except UsageError as err:
        where = err.ctx.command_path if err.ctx else "membudget"
        print(f"membudget: error: {err.format_message()} (see `{where} --help`)", file=sys.stderr)
        sys.exit(2)
    except Abort:
        print("membudget: interrupted", file=sys.stderr)
        sys.exit(130)
    except (SpecError, PolicyError, BudgetError, ValueError) as err:
        print(f"membudget: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


from . import generate, memory, plan, report, sweep  # noqa: E402,F401  (registers the commands)
