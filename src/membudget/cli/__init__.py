"""The `membudget` command (DESIGN.md §4). Errors: one line on stderr, exit status 2.

Commands live beside this file, one module per theme: memory.py (memory, fit), generate.py
(generate, bench), sweep.py (sweep, eval), plan.py (plan), report.py (report); what they share
(the app, consoles, options, cells) is common.py.
"""

from __future__ import annotations

import sys

from ..fit import BudgetError
from ..memory import PolicyError
from ..spec import SpecError
from . import generate, memory, plan, report, sweep  # noqa: F401  (registers the commands)
from .common import app


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
