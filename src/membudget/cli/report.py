"""`membudget report`: a browsable page of a results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import app, out


@app.command()
def report(
    db: Annotated[Path, typer.Argument(help="Results store written by `membudget sweep` or `eval`")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for index.html and the PNG figures")] = Path(
        "report"
    ),
) -> None:
    """Accuracy-vs-memory figures, Pareto frontiers, the scale threshold and every scenario, as static HTML.

    Example: membudget report results.db --out report
    """
    from ..analysis.report import build_report

    if not db.is_file():
        raise ValueError(f"{db}: no such results store; run `membudget sweep` first")
    page = build_report(db, out_dir)
    out.print(f"report written to {page}")
