"""The sweep's progress on stderr: a bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .common import err_console, plural


class SweepProgress:
    """Progress of a sweep on stderr: a bar on a terminal; otherwise (a log file, nohup) a plain line
    at most every `every` seconds and at the end. The rate counts the tokens decoded since the first
    decode step, inside the generation under way too (model loads and prefills slow it). Time left:
    the time per problem finished in this run times the problems to go, counted down from the last
    problem's end while the next generation runs (a batch finishes many at once, so a rate over the
    last few seconds would mislead), or if less, the decode steps of the `planned` tokens not yet
    decoded at that rate (every row of every generation to its last step, an upper bound as rows that
    stop early decode fewer; shown once `SETTLE` seconds of decoding give a rate worth
    extrapolating). Once the countdown has run out, only that bound, as "at most"."""

    SETTLE = 5.0

    def __init__(self, name: str, total: int, done: int, planned: int = 0, every: float = 15.0) -> None:
        self.name, self.total, self.done, self.planned, self.every = name, total, done, planned, every
        self.start_done, self.decoded, self.finished, self.steps_now, self.last_line = done, 0, 0, 0, 0.0
        self.first: tuple[float, int] | None = None  # time and tokens of the first decode step
        self.last_finish = 0.0  # when the last problem of this run was stored
        self.tty = err_console.is_terminal
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            console=err_console,
            disable=not self.tty,
        )
        self.task = self.bar.add_task(f"{name}: problems", total=total, completed=done, left="")
        self.steps = self.bar.add_task("decode steps", total=None, left="")  # moves within a batch
        self.t0 = time.monotonic()

    def __enter__(self):
        self.bar.__enter__()
        self._line(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)
        self._line(force=True)

    def rate(self) -> float:
        """Tokens decoded per second since the first decode step (by Ray workers, which report no
        steps: the tokens of the problems finished, per second since the sweep started)."""
        now = time.monotonic()
        if self.first is None:
            return self.finished / max(now - self.t0, 1e-9)
        return (self.decoded - self.first[1]) / max(now - self.first[0], 1e-9)

    def left(self) -> str:
        if self.done >= self.total:
            return f"done in {_clock(time.monotonic() - self.t0)}"
        finished = self.done - self.start_done
        settled = (
            self.first is not None and time.monotonic() - self.first[0] >= self.SETTLE and self.rate() > 0
        )
        bound = max(self.planned - self.decoded, 0) / self.rate() if self.planned and settled else None
        if not finished:
            return (
                "time left: after the first problems"
                if bound is None
                else f"at most {_clock(bound)} of decoding left"
            )
        per_problem = (self.last_finish - self.t0) / finished
        countdown = per_problem * (self.total - self.done) - (time.monotonic() - self.last_finish)
        if countdown > 0:
            return f"about {_clock(countdown if bound is None else min(countdown, bound))} left"
        # past the countdown the bound is all there is, and it is an upper bound, not an estimate
        at_most = "" if bound is None else f", at most {_clock(bound)}"
        return f"time left: finishing this generation{at_most}"

    def problem(self, rows) -> None:
        """After a problem's rows are stored."""
        self.done += 1
        self.steps_now = 0
        self.last_finish = time.monotonic()
        last = max(r.budget for r in rows)
        self.finished += sum(r.thinking_tokens + r.answer_tokens for r in rows if r.budget == last)
        where = f"{rows[0].model.split('/')[-1]} {rows[0].weights}-bit {rows[0].kv} {rows[0].task}"
        self.bar.update(self.task, advance=1, left=self.left(), description=f"{self.name}: {where}")
        self._line()

    def step(self, rows: int) -> None:
        """After every decode step, with the rows it advanced."""
        self.decoded += rows
        if self.first is None:
            self.first = (time.monotonic(), self.decoded)
        self.steps_now += 1
        self.bar.advance(self.steps)
        self._line()

    def _line(self, force: bool = False) -> None:
        """On a terminal the steps bar's rate at most once a second; otherwise a line every `every` s."""
        now = time.monotonic()
        if not (force or now - self.last_line >= (1.0 if self.tty else self.every)):
            return
        self.last_line = now
        if self.tty:
            self.bar.update(self.steps, description=f"decode steps ({self.rate():,.0f} tok/s)")
            return
        inside = f", {plural(self.steps_now, 'step')} into a generation" if self.steps_now else ""
        err_console.print(
            f"{self.name}: {self.done}/{self.total} problems{inside}, {self.rate():,.0f} tok/s, {self.left()}",
            highlight=False,
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    """H:MM:SS of whole seconds (59.7 s is 0:01:00, not 0:00:60)."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
