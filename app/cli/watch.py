"""`taas watch`: a job's events shown as they come, as a live progress bar in a terminal or as
plain lines (no carriage returns, no colours) when the output is a pipe or a file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from taas.app.cli.format import (
    current_epoch,
    duration,
    event_line,
    number,
    outcome_lines,
    parse_time,
    training_done,
)
from taas.app.cli.job_feed import JobEvent
from taas.app.core.wording import counted

PROGRESS_LINE_SECONDS = 5.0  # plain output: at most one progress line this often within an epoch


class View(Protocol):
    def show(self, event: JobEvent) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class Scores:
    """What the views keep between events: the epoch count, the latest loss and accuracy."""

    def __init__(self) -> None:
        self.epochs: int | None = None
        self.train_loss: float | None = None
        self.val_accuracy: float | None = None

    def update(self, event: JobEvent) -> None:
        data = event.data
        if event.type == "progress":
            self.epochs = data.get("epochs", self.epochs)
        elif event.type == "metric":
            self.train_loss = _first(data.get("train_loss"), self.train_loss)
            self.val_accuracy = _first(data.get("val_accuracy"), self.val_accuracy)

    def text(self) -> str:
        parts = []
        if self.train_loss is not None:
            parts.append(f"loss {self.train_loss:.4f}")
        if self.val_accuracy is not None:
            parts.append(f"val_acc {self.val_accuracy:.4f}")
        return "  ".join(parts)


def _first(value: float | None, otherwise: float | None) -> float | None:
    return value if value is not None else otherwise


def speed_text(data: dict[str, Any]) -> str:
    speed = data.get("samples_per_second")
    return f"{speed:,.0f} samples/s" if speed else ""


def eta_text(data: dict[str, Any]) -> str:
    eta = data.get("eta_seconds")
    return f"eta {duration(eta)}" if eta is not None else ""


def metric_line(data: dict[str, Any], epochs: int | None) -> str | None:
    """An epoch's metrics, or an evaluation within an epoch; None for a training step (the
    progress lines carry its loss) and for the evaluation at an epoch's end."""
    if data.get("granularity") == "step":
        if data.get("kind") != "eval" or float(data["epoch"]).is_integer():
            return None  # a training step, or the evaluation its epoch's line reports
        return (
            f"eval at epoch {data['epoch']:.2f}: val_loss {number(data.get('val_loss'))} "
            f"val_accuracy {number(data.get('val_accuracy'))}"
        )
    of = f"/{epochs}" if epochs else ""
    seconds = data.get("epoch_seconds")
    took = f" ({seconds:.1f}s)" if seconds is not None else ""
    return (
        f"epoch {data['epoch']}{of} done: train_loss {number(data.get('train_loss'))} "
        f"val_loss {number(data.get('val_loss'))} val_accuracy "
        f"{number(data.get('val_accuracy'))}{took}"
    )


def status_line(data: dict[str, Any]) -> str:
    attempt = f" (attempt {data['attempt']})" if data.get("attempt") else ""
    said = data.get("message")
    message = f": {said}" if said and said != data.get("status") else ""
    return f"{data.get('status')}{attempt}{message}"


class PlainView:
    """One line per event worth a line, each stamped with the local time."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.clock = out, clock
        self.scores = Scores()
        self.last_progress: tuple[int, float] | None = None  # (epoch, when it was printed)

    def _print(self, text: str, at: str | None = None) -> None:
        """``at``: the event's own time (ISO), so a replayed history keeps its times."""
        moment = parse_time(at)
        when = moment.astimezone() if moment else datetime.now()
        self.out.write(f"{when.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()

    def note(self, message: str) -> None:
        self._print(message)

    def show(self, event: JobEvent) -> None:
        self.scores.update(event)
        data = event.data
        if event.type == "status":
            self._print(status_line(data), data.get("created_at"))
        elif event.type == "log":
            self._print(f"log: {data.get('message', '')}", data.get("created_at"))
        elif event.type == "progress" and self._progress_due(data):
            self._print(self._progress(data))
        elif event.type == "metric":
            line = metric_line(data, self.scores.epochs)
            if line is not None:
                self._print(line)
        elif event.type == "end":
            for line in outcome_lines(data):
                self._print(line)

    def _progress_due(self, data: dict[str, Any]) -> bool:
        """A new epoch always; within one, every PROGRESS_LINE_SECONDS at most; once training
        is done, once (the final evaluation reports no progress of its own)."""
        epoch, now = current_epoch(data) + (1 if training_done(data) else 0), self.clock()
        if self.last_progress is not None:
            last_epoch, printed_at = self.last_progress
            same_epoch = epoch == last_epoch
            if same_epoch and (training_done(data) or now - printed_at < PROGRESS_LINE_SECONDS):
                return False
        self.last_progress = (epoch, now)
        return True

    def _progress(self, data: dict[str, Any]) -> str:
        if training_done(data):
            trained = counted(int(data.get("epochs") or 0), "epoch")
            return f"{trained} trained; final evaluation on the test split  {self.scores.text()}"
        parts = [
            f"epoch {current_epoch(data)}/{data.get('epochs', '?')}",
            f"{float(data.get('fraction') or 0):.0%}",
            speed_text(data),
            eta_text(data),
            self.scores.text(),
        ]
        return "  ".join(part for part in parts if part)

    def close(self) -> None:
        pass


class LogView:
    """`taas logs --follow`: status changes and messages as `taas logs` prints them, then the
    outcome."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def note(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()

    def show(self, event: JobEvent) -> None:
        if event.type in ("status", "log"):
            self.note(event_line(event.type, event.data))
        elif event.type == "end":
            for line in outcome_lines(event.data):
                self.note(line)

    def close(self) -> None:
        pass


class LiveView:
    """A rich progress bar for the job; status changes, logs and epochs print above it."""

    def __init__(self, console: Console, job_id: str) -> None:
        self.console = console
        self.scores = Scores()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[scores]}"),
            console=console,
            auto_refresh=True,
        )
        self.task = self.progress.add_task(
            job_id, total=1.0, epoch=0, epochs="?", speed="", eta="", scores=""
        )
        self.progress.start()

    def note(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)

    def show(self, event: JobEvent) -> None:
        self.scores.update(event)
        data = event.data
        if event.type == "status":
            self.note(status_line(data))
            self.progress.update(self.task, description=str(data.get("status")))
        elif event.type == "log":
            self.note(f"log: {data.get('message', '')}")
        elif event.type == "progress":
            done = training_done(data)
            self.progress.update(
                self.task,
                description="final evaluation" if done else "running",
                completed=float(data.get("fraction") or 0),
                epoch=current_epoch(data),
                epochs=data.get("epochs", "?"),
                speed=speed_text(data),  # the last epoch's throughput stays on show
                eta="" if done else eta_text(data),
            )
        elif event.type == "metric":
            line = metric_line(data, self.scores.epochs)
            if line is not None:
                self.note(line)
        if event.type == "end":
            self.close()
            for line in outcome_lines(data):
                self.console.print(line, markup=False, highlight=False)
        else:
            self.progress.update(self.task, scores=self.scores.text())

    def close(self) -> None:
        self.progress.stop()


def watch(events: Iterable[JobEvent], view: View) -> dict[str, Any] | None:
    """Show every event; returns the job's ``end`` data (None if the events stopped before)."""
    try:
        for event in events:
            view.show(event)
            if event.type == "end":
                return event.data
    finally:
        view.close()
    return None
