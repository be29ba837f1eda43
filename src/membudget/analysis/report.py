"""`membudget report`: one self-contained HTML page (figures embedded) plus the PNG files.

Every text that comes from data (model names, prompts, settings) is HTML-escaped, and the page's
Content-Security-Policy allows exactly one script -- the static table sorter below, by its hash -- so
nothing in a data set or a model output can run in the reader's browser.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from pathlib import Path

import pandas as pd

from ..memory import GIB
from ..sweep.store import open_readonly
from .pareto import best_samples, eviction_vs_quantization, frontier, frontier_steps, scale_threshold
from .tables import COLUMNS, scenario_table

MARKERS = {16: "o", 8: "s", 4: "^"}
SORTER = """document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var up = th.getAttribute("data-order") !== "up";
    th.setAttribute("data-order", up ? "up" : "down");
    rows.sort(function (a, b) {
      var x = a.cells[column].getAttribute("data-v"), y = b.cells[column].getAttribute("data-v");
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return up ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});"""
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f4f4f4;cursor:pointer}td.t,th.t{text-align:left}pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:.8em}
.note{color:#555}"""


def _figure(df: pd.DataFrame, colour_by: str, title: str):
    """Accuracy (with 95 % intervals) against total memory on a log axis; marker shape = weight bits,
    size = token budget, colour = `colour_by`; the Pareto frontier as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    groups = sorted(df[colour_by].astype(str).unique())
    colours = plt.get_cmap("tab10")
    for i, group in enumerate(groups):
        part = df[df[colour_by].astype(str) == group]
        for bits, marker in MARKERS.items():
            sub = part[part["weights"] == bits]
            if sub.empty:
                continue
            x = sub["total_bytes"] / GIB
            ax.errorbar(
                x,
                100 * sub["accuracy"],
                yerr=[100 * (sub["accuracy"] - sub["low"]), 100 * (sub["high"] - sub["accuracy"])],
                fmt="none",
                ecolor=colours(i % 10),
                alpha=0.3,
                lw=1,
            )
            ax.scatter(
                x,
                100 * sub["accuracy"],
                marker=marker,
                s=20 + sub["budget"] / 200,
                color=colours(i % 10),
                alpha=0.85,
                edgecolors="black",
                linewidths=0.4,
                label=f"{group.split('/')[-1]}, {bits}-bit",
            )
    front = frontier(df)
    ax.plot(
        front["total_bytes"] / GIB,
        100 * front["accuracy"],
        color="black",
        lw=1.2,
        drawstyle="steps-post",
        label="Pareto frontier",
    )
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    # inside one decade every minor tick gets a label; across several, labels at every minor tick
    # collide, so only those at 2 and 5 times a power of ten
    span = df["total_bytes"].max() / max(df["total_bytes"].min(), 1)
    sparse = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.1e}"[0] in "25" else "")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if span < 10 else sparse)
    ax.set_xlabel("total memory (GiB, log scale): weights + KV cache + workspace")
    ax.set_ylabel("accuracy (%), 95 % bootstrap interval")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="marker size = token budget",
        title_fontsize=7,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _percent(v) -> str:
    return f"{100 * v:.1f}"


def _gib(v) -> str:
    return f"{v:.3f}"


# column -> (title, how a value shows); fractions of problems show as % like the CLI's tables
HEADERS = {
    "model": ("model", str),
    "weights": ("weights (bits)", str),
    "kv": ("KV cache", str),
    "task": ("task", str),
    "kind": ("kind", str),
    "budget": ("T (tokens)", lambda v: f"{v:,}"),
    "samples": ("G (samples)", str),
    "metric": ("metric", str),
    "accuracy": ("accuracy %", _percent),
    "low": ("95 % CI low %", _percent),
    "high": ("95 % CI high %", _percent),
    "gained": ("accuracy gained (points)", lambda v: f"{100 * v:+.1f}"),
    "eviction": ("best eviction %", _percent),
    "quantization": ("best quantization %", _percent),
    "n_problems": ("problems", str),
    "total_gib": ("total GiB", _gib),
    "weights_gib": ("weights GiB", _gib),
    "kv_gib": ("KV GiB", _gib),
    "workspace_gib": ("workspace GiB", _gib),
    "memory_gib": ("memory GiB", _gib),
    "added_gib": ("added GiB", lambda v: f"{v:+.3f}"),
    "effective_gib": ("weights GiB (effective size)", _gib),
    "low_gib": ("from GiB", lambda v: f"{v:.2f}"),
    "high_gib": ("to GiB", lambda v: f"{v:.2f}"),
    "up_to_gib": ("up to GiB", lambda v: f"{v:.2f}"),
    "spent_on": ("spent on", str),
    "rows": ("rows", str),
    "peak_gib": ("measured peak GiB", _gib),
    "accounted_gib": ("accounted GiB", _gib),
    "ratio": ("peak / accounted", _gib),
    "better": ("better", str),
    "from": ("from frontier point", str),
    "to": ("to frontier point", str),
}


def _table(df: pd.DataFrame, text_columns: set[str], sortable: bool = False, empty: str = "") -> str:
    """An HTML table with titled columns (HEADERS); `empty`: the sentence shown instead of no rows."""
    if df.empty:
        return f"<p class='note'>{html.escape(empty or 'Nothing to show.')}</p>"
    df = df.drop_duplicates()
    head = "".join(
        f'<th class="{"t" if c in text_columns else ""}">{html.escape(HEADERS.get(c, (str(c),))[0])}</th>'
        for c in df.columns
    )
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for column, value in zip(df.columns, row, strict=True):
            show = HEADERS.get(column, (None, lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)))[1]
            shown = "-" if isinstance(value, float) and pd.isna(value) else show(value)
            cells.append(
                f'<td class="{"t" if column in text_columns else ""}" data-v="{html.escape(str(value))}">'
                f"{html.escape(shown)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _peaks(con) -> pd.DataFrame:
    """Per generation with a measured peak: its rows, peak and accounted GiB and their ratio."""
    if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'generations'").fetchone():
        return pd.DataFrame()
    rows = con.execute(
        "SELECT model, weights, kv, task, rows, peak_memory_bytes, accounted_bytes FROM generations "
        "WHERE peak_memory_bytes IS NOT NULL ORDER BY model, weights, kv, task, rows"
    ).fetchall()
    df = pd.DataFrame(rows, columns=["model", "weights", "kv", "task", "rows", "peak", "accounted"])
    return df.assign(
        peak_gib=df["peak"] / GIB, accounted_gib=df["accounted"] / GIB, ratio=df["peak"] / df["accounted"]
    ).drop(columns=["peak", "accounted"])


def build_report(db: str | Path, out: str | Path) -> Path:
    """Write out/index.html and out/*.png from a results store; returns the page's path."""
    df = scenario_table(db)
    if df.empty:
        raise ValueError(f"{db}: no scenario has complete samples yet; run or resume the sweep first")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass the name of a folder for the report")
    files: dict[str, bytes] = {}  # written together at the end: nothing half-written on an error
    sections = []
    for task, part in df.groupby("task"):
        front = frontier(part)
        threshold = scale_threshold(front)
        sections.append(f"<h2>{html.escape(task)}</h2>")
        for colour_by, label in (("model", "model"), ("kv", "KV policy"), ("samples", "samples G")):
            png = _figure(part, colour_by, f"{task}: accuracy vs memory, colour = {label}")
            name = f"{task}-by-{colour_by}.png"
            files[name] = png
            sections.append(
                f'<p><img alt="{html.escape(task)} accuracy against memory by {label}" '
                f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'
            )
        turn = (
            "the frontier never turns from weights to tokens in this data"
            if threshold is None
            else f"the frontier turns from spending on weights to spending on tokens at {threshold:.2f} GiB of weights"
        )
        sections.append(
            f"<h3>Frontier</h3><p class='note'>{html.escape(turn)} (the study found about 4.2 GiB, "
            "8-bit Qwen3-4B).</p>"
        )
        hidden = {"task", "kind", "n_problems", "weights_bytes", "kv_bytes", "workspace_bytes"}
        cols = [c for c in COLUMNS if c not in hidden]
        sections.append(
            _table(
                front[cols].assign(total_gib=front["total_bytes"] / GIB).drop(columns="total_bytes"),
                {"model", "kv", "metric"},
            )
        )
        sections.append("<h3>What each frontier step spends memory on</h3>")
        steps = frontier_steps(front)
        sections.append(
            _table(steps, {"spent_on", "from", "to"}, empty="The frontier has one scenario: no steps.")
        )
        sections.append("<h3>Eviction against quantization at equal memory</h3>")
        sections.append(
            _table(
                eviction_vs_quantization(part),
                {"better"},
                empty="No memory range holds both an evicted and a quantized cache in this data.",
            )
        )
        sections.append("<h3>Best sample count G by memory</h3>")
        sections.append(_table(best_samples(part), {"model"}, empty="No scenario to compare."))
    everything = df.assign(
        weights_gib=df["weights_bytes"] / GIB,
        kv_gib=df["kv_bytes"] / GIB,
        workspace_gib=df["workspace_bytes"] / GIB,
        total_gib=df["total_bytes"] / GIB,
    ).drop(columns=["weights_bytes", "kv_bytes", "workspace_bytes", "total_bytes"])
    sections.append("<h2>All scenarios</h2><p class='note'>Click a column to sort.</p>")
    sections.append(_table(everything, {"model", "kv", "task", "kind", "metric"}, sortable=True))
    con = open_readonly(db)
    sections.append("<h2>Measured peak against the accounting, per generation</h2>")
    sections.append(_table(_peaks(con), {"model", "kv", "task"}, empty=(
        "No generation recorded a peak: peaks are measured on CUDA GPUs (and recorded by stores "
        "written since generations were recorded).")))  # fmt: skip
    sections.append("<h2>Settings and prompts</h2>")
    for name, config in con.execute("SELECT name, config FROM sweeps ORDER BY created"):
        sections.append(
            f"<h3>sweep {html.escape(name)}</h3><pre>{html.escape(json.dumps(json.loads(config), indent=1))}</pre>"
        )
    for run_key, task, settings in con.execute("SELECT run_key, task, settings FROM runs"):
        s = json.loads(settings)
        sections.append(
            f"<h3>{html.escape(task)} prompt (run {html.escape(run_key)})</h3>"
            f"<pre>{html.escape(str(s.get('template', '')))}</pre>"
            f"<p>forced answer prefix: <code>{html.escape(repr(s.get('answer_prefix', '')))}</code></p>"
        )
    con.close()
    digest = base64.b64encode(hashlib.sha256(SORTER.encode()).digest()).decode()
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'">
<title>membudget report: {html.escape(Path(db).name)}</title><style>{STYLE}</style></head>
<body><h1>Where should the bytes go? {html.escape(Path(db).name)}</h1>
<p class="note">{len(df)} scenario{"" if len(df) == 1 else "s"} measured. Memory is weights + KV cache + workspace (membudget's
convention 'all'); accuracy is pass@1 for G = 1 and exact Maj@G otherwise, with 95 % bootstrap intervals over
problems.</p>
{"".join(sections)}
<script>{SORTER}</script></body></html>"""
    files["index.html"] = page.encode("utf-8")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (out / name).write_bytes(content)
    except OSError as err:
        raise ValueError(f"cannot write the report into {out}: {err.strerror}; pass another --out") from None
    return out / "index.html"
