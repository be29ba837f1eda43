"""The results store: SQLite in WAL mode. The driver alone writes; every write is idempotent.

Tables
  sweeps     one row per sweep file run (its name, its config as JSON)
  runs       one row per generation setting (run_key): sampling, generation, prompt template
  scenarios  the grid of a sweep with its memory breakdown
  samples    one row per (run_key, model, weights, kv, task, problem, sample index, budget)

All rows of one problem's generation are written in one transaction, so a killed sweep loses at most
the problem in flight, and a rerun (INSERT OR IGNORE on the primary key) never duplicates a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, task TEXT NOT NULL, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (
    sweep_id TEXT NOT NULL, run_key TEXT NOT NULL, model TEXT NOT NULL, weights INTEGER NOT NULL,
    kv TEXT NOT NULL, task TEXT NOT NULL, budget INTEGER NOT NULL, samples INTEGER NOT NULL,
    weights_bytes INTEGER NOT NULL, kv_bytes INTEGER NOT NULL, workspace_bytes INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, model, weights, kv, task, budget, samples));
CREATE TABLE IF NOT EXISTS samples (
    run_key TEXT NOT NULL, model TEXT NOT NULL, weights INTEGER NOT NULL, kv TEXT NOT NULL,
    task TEXT NOT NULL, problem_id TEXT NOT NULL, sample_index INTEGER NOT NULL, budget INTEGER NOT NULL,
    seed INTEGER NOT NULL, gold TEXT NOT NULL, answer_text TEXT NOT NULL, extracted TEXT,
    correct INTEGER NOT NULL, thinking_tokens INTEGER NOT NULL, answer_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL, prefill_s REAL NOT NULL, decode_s REAL NOT NULL,
    peak_memory_bytes INTEGER, created REAL NOT NULL,
    PRIMARY KEY (run_key, model, weights, kv, task, problem_id, sample_index, budget));
"""

# Tables newer stores also have; a store without them is still a store (they are created on write).
SCHEMA_EXTRA = """
CREATE TABLE IF NOT EXISTS generations (
    run_key TEXT NOT NULL, model TEXT NOT NULL, weights INTEGER NOT NULL, kv TEXT NOT NULL,
    task TEXT NOT NULL, problems TEXT NOT NULL, first_sample INTEGER NOT NULL, rows INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, peak_memory_bytes INTEGER, accounted_bytes INTEGER NOT NULL,
    decode_s REAL NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (run_key, model, weights, kv, task, problems, first_sample));
"""

RESULT_COLUMNS = (
    "run_key",
    "model",
    "weights",
    "kv",
    "task",
    "problem_id",
    "sample_index",
    "budget",
    "seed",
    "gold",
    "answer_text",
    "extracted",
    "correct",
    "thinking_tokens",
    "answer_tokens",
    "finish_reason",
    "prefill_s",
    "decode_s",
    "peak_memory_bytes",
)


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    """One generation (one pass of samples over a batch of problems): its rows, the measured peak
    (CUDA only) and `membudget memory`'s accounting of that batch (weights, every row's KV, the
    workspace of all rows)."""

    run_key: str
    model: str
    weights: int
    kv: str
    task: str
    problems: str  # the problem ids, comma-joined
    first_sample: int
    rows: int
    prompt_tokens: int  # the longest prompt: the cache is allocated for it
    peak_memory_bytes: int | None
    accounted_bytes: int
    decode_s: float


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One sample's result at one budget (timings and peak memory are those of its whole generation)."""

    run_key: str
    model: str
    weights: int
    kv: str
    task: str
    problem_id: str
    sample_index: int
    budget: int
    seed: int
    gold: str
    answer_text: str
    extracted: str | None
    correct: bool
    thinking_tokens: int
    answer_tokens: int
    finish_reason: str
    prefill_s: float
    decode_s: float
    peak_memory_bytes: int | None


def scenario_score(
    db: sqlite3.Connection,
    run_key: str,
    model: str,
    weights: int,
    kv: str,
    task: str,
    budget: int,
    samples: int,
):
    """pass@1 (samples = 1) or Maj@samples over the problems whose first `samples` rows exist, or None."""
    from ..scoring import score

    table: dict[str, list] = {}
    for problem_id, extracted, correct in db.execute(
        "SELECT problem_id, extracted, correct FROM samples WHERE run_key=? AND model=? AND weights=? "
        "AND kv=? AND task=? AND budget=? AND sample_index < ? ORDER BY problem_id, sample_index",
        (run_key, model, weights, kv, task, budget, samples),
    ):
        table.setdefault(problem_id, []).append((extracted, bool(correct)))
    complete = [v for v in table.values() if len(v) == samples]
    return score(complete, k=samples) if complete else None


class StoreError(ValueError):
    """A --db that is not a membudget results store (message: which file, what is wrong, what to do)."""


@cache
def _columns_needed() -> dict[str, set[str]]:
    """Table -> the columns SCHEMA gives it."""
    memory = sqlite3.connect(":memory:")
    memory.executescript(SCHEMA)
    tables = [name for (name,) in memory.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    needed = {t: {row[1] for row in memory.execute(f"PRAGMA table_info({t})")} for t in tables}
    memory.close()
    return needed


def check_store(db: sqlite3.Connection, path: Path) -> None:
    """Refuse, by name, a file that is not SQLite or holds other tables or columns than ours. An empty
    database passes (a new store)."""
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        raise StoreError(
            f"{path} is not a SQLite database (or is damaged); pass --db with a membudget results store "
            "or the name of a new file"
        ) from None
    if not tables:
        return
    for table, columns in _columns_needed().items():
        if table not in tables:
            raise StoreError(
                f"{path} is a SQLite database but not a membudget results store (it has no table "
                f"{table!r}); pass --db with another file"
            )
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            missing = ", ".join(sorted(columns - have))
            raise StoreError(
                f"{path}: table {table!r} lacks the column(s) {missing}: not a membudget results store "
                "(or one from another version); pass --db with another file"
            )


def open_readonly(path: str | Path, empty_ok: bool = False) -> sqlite3.Connection:
    """A read-only connection to an existing results store (never creates or changes a file); an
    empty database is refused unless `empty_ok`."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such results store; run `membudget sweep` first or pass --db")
    # with no writer at work (no -wal file) read it as immutable: SQLite then creates no -shm/-wal
    # files beside it; while a sweep writes, read-only WAL reads see its committed rows
    live = Path(f"{path}-wal").exists()
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro{'' if live else '&immutable=1'}", uri=True, timeout=60
    )
    try:
        check_store(db, path)
        if not empty_ok and not db.execute("SELECT name FROM sqlite_master").fetchone():
            raise StoreError(f"{path} is an empty database, not a membudget results store")
    except BaseException:
        db.close()
        raise
    return db


class Store:
    def __init__(self, path: str | Path) -> None:
        """Open (or create) the results store at `path` for writing; a file that exists must be one."""
        self.path = Path(path)
        if self.path.exists():
            if not self.path.is_file():
                raise StoreError(f"{self.path} is not a file; pass --db with a results store file")
            open_readonly(self.path, empty_ok=True).close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60)
        except (OSError, sqlite3.OperationalError) as err:
            raise StoreError(f"cannot create the results store {self.path}: {err}") from None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA + SCHEMA_EXTRA)

    @classmethod
    def readonly(cls, path: str | Path) -> Store | None:
        """The store at `path` opened read-only (for dry runs and reports), or None if there is none."""
        if not Path(path).exists():
            return None
        store = cls.__new__(cls)
        store.path, store.db = Path(path), open_readonly(path) if Path(path).stat().st_size else None
        if store.db is None:  # an empty file: a store with nothing in it yet
            return None
        return store

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:  # commits on success, rolls back on error
            yield self.db

    def add_sweep(self, sweep_id: str, name: str, config: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?)",
                (sweep_id, name, json.dumps(config, sort_keys=True, default=str), time.time()),
            )

    def add_run(self, run_key: str, task: str, settings: dict) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?)",
                (run_key, task, json.dumps(settings, sort_keys=True, default=str)),
            )

    def add_scenarios(self, rows: Iterable[tuple]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO scenarios VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def add_samples(self, rows: Iterable[SampleRow]) -> int:
        """Write one generation's rows atomically; returns how many were new."""
        now = time.time()
        values = [tuple(asdict(r)[c] for c in RESULT_COLUMNS) + (now,) for r in rows]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO samples ({', '.join(RESULT_COLUMNS)}, created) "
                f"VALUES ({', '.join('?' * (len(RESULT_COLUMNS) + 1))})",
                values,
            )
            return db.total_changes - before

    def add_generation(self, record: GenerationRecord) -> None:
        values = tuple(asdict(record).values()) + (time.time(),)
        with self.transaction() as db:
            db.execute(f"INSERT OR IGNORE INTO generations VALUES ({', '.join('?' * len(values))})", values)

    def done_problems(
        self, run_key: str, model: str, weights: int, kv: str, task: str, expected: int
    ) -> set[str]:
        """Problems whose generation is complete (all `expected` rows present)."""
        cursor = self.db.execute(
            "SELECT problem_id FROM samples WHERE run_key=? AND model=? AND weights=? AND kv=? AND task=? "
            "GROUP BY problem_id HAVING COUNT(*) = ?",
            (run_key, model, weights, kv, task, expected),
        )
        return {row[0] for row in cursor}

    def sample_rows(self) -> list[tuple]:
        """All sample rows without `created`, sorted: for comparing stores."""
        cursor = self.db.execute(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM samples ORDER BY "
            "run_key, model, weights, kv, task, problem_id, sample_index, budget"
        )
        return cursor.fetchall()

    def export_parquet(self, path: str | Path) -> int:
        """Write the samples table to Parquet; returns the row count."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.sample_rows()
        table = pa.Table.from_pylist([dict(zip(RESULT_COLUMNS, r, strict=True)) for r in rows])
        pq.write_table(table, path)
        return len(rows)
