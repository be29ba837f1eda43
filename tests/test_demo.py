"""The demo's path (`make demo`), reduced: the example sweep on the real SmolLM2, its report, the plan."""

import re
import sqlite3
from pathlib import Path

from .test_cli import run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "smollm2-arithmetic.toml"


def reduced(tmp_path: Path) -> Path:
    """The demo's sweep file with fewer problems, budgets, weights and policies (same keys)."""
    text = EXAMPLE.read_text()
    for key, value in {
        "weights": "[16, 4]",
        "kv": '["full", "quant:4"]',
        "budgets": "[8, 20]",
        "samples": "[1, 2]",
        "batch": "3",
        "data": f'"{EXAMPLE.parent / "data" / "easy-arithmetic.jsonl"}"\nlimit = 3',
    }.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_demo_path_runs_reports_and_plans(tmp_path, monkeypatch, capsys, smollm2_fp32):
    # smollm2_fp32 has converted the GGUF into the session's MEMBUDGET_CACHE already
    db, report = tmp_path / "results.db", tmp_path / "report"
    code, out, err = run(monkeypatch, capsys, "sweep", str(reduced(tmp_path)), "--db", str(db))
    assert code == 0, err
    assert "quant:4" in out and "maj@2" in out
    rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert rows == 2 * 2 * 3 * 2 * 2  # weights x KV x problems x G x budgets
    code, _, err = run(monkeypatch, capsys, "sweep", str(reduced(tmp_path)), "--db", str(db))
    assert code == 0, err  # a rerun reuses every row
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM samples").fetchone()[0] == rows
    code, out, err = run(monkeypatch, capsys, "report", str(db), "--out", str(report))
    assert code == 0, err
    assert (report / "index.html").is_file() and list(report.glob("*.png"))
    code, out, err = run(
        monkeypatch, capsys, "plan", "--memory", "450MiB", "--task", "arithmetic", "-m", "smollm2",
        "--db", str(db), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert '"source": "measured"' in out
