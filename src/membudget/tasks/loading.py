"""Reading benchmark rows from a local file (JSONL, JSON, Parquet, CSV) or a Hugging Face dataset id."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMATS = (".jsonl", ".json", ".parquet", ".csv")


class DataError(ValueError):
    """Unreadable or malformed benchmark data (message names the file and row). `fix` says what the
    user can give instead: "data" (a local file) or "columns" (a column mapping); each front end
    words it in its own terms (`hint`)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix

    def hint(self, words: dict[str, str]) -> str:
        """The message with the front end's way to give the fix, e.g. {"data": "pass --data FILE"}."""
        text = str(self)
        return f"{text}; {words[self.fix]}" if self.fix in words else text


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(row number, row) for every record of a local file; row numbers start at 1 (JSONL: the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (a JSONL, JSON, Parquet or CSV file is expected)", "data")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
                yield number, _as_dict(row, path, number)
    elif suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        for number, row in enumerate(rows, 1):
            yield number, _as_dict(row, path, number)
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), 1):
                yield number, row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for damaged files
            raise DataError(f"{path}: not a readable Parquet file ({err})") from None
        for number, row in enumerate(table.to_pylist(), 1):
            yield number, row
    else:
        raise DataError(f"{path}: unknown format {suffix!r}; use one of {', '.join(FORMATS)}")


def _as_dict(row, path: Path, number: int) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
    return row


def read_hub(dataset_id: str, config: str | None, split: str) -> Iterator[tuple[int, dict]]:
    """Rows of a hub dataset; offline, gated or missing data ends in a DataError whose fix is a local file."""
    from ..spec import hub_reachable

    try:
        import datasets

        if hub_reachable():
            data = datasets.load_dataset(dataset_id, config, split=split)
        else:  # offline: the local HF cache only, at once (no retries against an unreachable hub)
            with _offline(datasets):
                data = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as err:  # network, auth (gated), missing ids: all end the same way for the user
        name = f"{dataset_id}" + (f" (config {config})" if config else "")
        raise DataError(
            f"could not load {name} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "Offline or without access (gated sets need `huggingface-cli login` and an accepted licence)? "
            "A local copy (JSONL, JSON, Parquet or CSV) works offline",
            "data",
        ) from None
    for number, row in enumerate(data, 1):
        yield number, dict(row)


@contextmanager
def _offline(datasets):
    """datasets and huggingface_hub in offline mode for the duration (they read these flags per call)."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def field(row: dict, column: str, path: str, number: int) -> str:
    """The non-empty text of `column` in a row, or a DataError naming the row."""
    if column not in row:
        raise DataError(
            f"{path}: row {number} has no column {column!r} (it has: {', '.join(map(str, row))})",
            "columns",
        )
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{path}: row {number}: column {column!r} is empty")
    return str(value).strip()
