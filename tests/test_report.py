"""The report: built from a store, escaped, and rendered by headless Chromium without console errors."""

import json
import os
import shutil
import sqlite3
import subprocess

import pytest

from membudget.analysis.report import build_report

from .conftest import fake_store

EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    db = fake_store(
        folder / "r.db",
        {
            ("Qwen/Qwen3-0.6B", 16, "full", 2000): 0.1,
            ("Qwen/Qwen3-0.6B", 16, "full", 10000): 0.2,
            ("Qwen/Qwen3-1.7B", 8, "full", 6000): 0.3,
            ("Qwen/Qwen3-4B", 8, "full", 2000): 0.35,
            ("Qwen/Qwen3-4B", 8, "full", 14000): 0.6,
            ("Qwen/Qwen3-4B", 4, "rkv:4096", 14000): 0.5,
            ("Qwen/Qwen3-8B", 16, "quant:8", 18000): 0.7,
        },
        problems=20,
    )
    con = sqlite3.connect(db)
    con.execute("INSERT INTO sweeps VALUES (?, ?, ?, 0)", ("s", EVIL, json.dumps({"name": EVIL})))
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?)",
        ("k", "aime25", json.dumps({"template": EVIL + " {question}", "answer_prefix": EVIL})),
    )
    con.commit()
    con.close()
    return build_report(db, folder / "out")


def test_report_escapes_everything_from_data(report):
    page = report.read_text()
    assert page.count("<script") == 1 and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == ["aime25-by-kv.png", "aime25-by-model.png", "aime25-by-samples.png"]
    assert page.count("data:image/png;base64,") == 3


def test_report_renders_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        message = "needs a headless Chromium: apt-get install chromium (Debian/Ubuntu)"
        if os.environ.get("MEMBUDGET_REQUIRE_BROWSER"):  # .ci/run sets it: CI must run this test
            pytest.fail(message)
        pytest.skip(message)
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1400",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    saturated = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25  # coloured markers of the figures
    assert saturated.mean() > 0.001, "the screenshot shows no coloured figure"
