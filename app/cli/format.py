"""How the CLI shows jobs as text: durations, sizes, the job summary, the job table, event lines.

Plain text only (no colours, no cursor moves), so the same output reads well in a terminal, a
log file or a pipe; the live progress bar of `taas watch` is in app/cli/watch.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from taas.app.core.wording import byte_size, counted

Row = Sequence[str]


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def duration(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h07m: short and sortable by eye."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


RUNNING = ("running", "cancelling")


def current_epoch(data: dict[str, Any]) -> int:
    """The epoch a running job is in (1-based): one past those completed, at most the last."""
    done, epochs = int(data.get("epoch") or 0), data.get("epochs")
    return min(done + 1, int(epochs)) if epochs else done + 1


def training_done(data: dict[str, Any]) -> bool:
    """Every batch ran: what is left is the final evaluation on the test split (and exports)."""
    return float(data.get("fraction") or 0) >= 1.0


def size(num_bytes: int) -> str:
    return byte_size(num_bytes)  # binary units, as the dashboard shows them


def number(value: float | None, digits: int = 4) -> str:
    """``digits`` decimals; a diverged value in the exponent form (a table stays narrow), NaN
    as itself ("-" is "not measured")."""
    if value is None:
        return "-"
    if value != value or abs(value) >= 1e6:  # NaN, or a loss that blew up
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def queued_and_ran(job: dict[str, Any], now: datetime | None = None) -> tuple[float | None, ...]:
    """Seconds the job waited in the queue and seconds it ran (so far, while it runs)."""
    now = now or datetime.now(UTC)
    created, started = parse_time(job["created_at"]), parse_time(job["started_at"])
    finished = parse_time(job["finished_at"])
    end_of_wait = started or finished or now
    queued = (end_of_wait - created).total_seconds() if created else None
    ran = ((finished or now) - started).total_seconds() if started else None
    return queued, ran


def table(headers: Row, rows: Sequence[Row], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns padded to their widest cell; the columns in ``right`` are aligned right."""
    widths = [max(len(row[index]) for row in [headers, *rows]) for index in range(len(headers))]

    def line(row: Row) -> str:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def progress_text(progress: dict[str, Any], running: bool = False) -> str:
    """A running job says the epoch it is in (1-based, as `taas watch` and the dashboard do);
    any other says how many epochs it completed."""
    share = f"({progress['fraction']:.0%})"
    if running and not training_done(progress):
        return f"epoch {current_epoch(progress)}/{progress['epochs']} {share}"
    return f"{progress['epoch']}/{progress['epochs']} epochs done {share}"


def live_progress_text(progress: dict[str, Any]) -> str:
    """The progress with what a running job reports besides: its batch, speed and ETA."""
    parts = [progress_text(progress, running=True)]
    if progress.get("batches_done") is not None and progress.get("batches_per_epoch"):
        parts.append(f"batch {progress['batches_done']}/{progress['batches_per_epoch']}")
    if progress.get("samples_per_second"):
        parts.append(f"{progress['samples_per_second']:,.0f} samples/s")
    if progress.get("eta_seconds") is not None:
        parts.append(f"eta {duration(progress['eta_seconds'])}")
    return ", ".join(parts)


def accuracy_of(job: dict[str, Any]) -> str:
    """The test accuracy of a finished job, else the latest validation accuracy (marked)."""
    metrics = job["metrics"]
    if metrics["test_accuracy"] is not None:
        return f"{metrics['test_accuracy']:.4f}"
    latest = metrics["latest"] or {}
    if latest.get("val_accuracy") is not None:
        return f"{latest['val_accuracy']:.4f} (val)"
    return "-"


def job_table(jobs: Sequence[dict[str, Any]], now: datetime | None = None) -> list[str]:
    """`taas jobs`: one row per job with its waiting and running time and its accuracy."""
    headers = ("ID", "STATUS", "NAME", "PROGRESS", "QUEUED", "RAN", "ACCURACY")
    rows = []
    for job in jobs:
        queued, ran = queued_and_ran(job, now)
        rows.append(
            (
                job["id"],
                job["status"],
                job["name"][:40],
                progress_text(job["progress"], running=job["status"] in RUNNING),
                duration(queued),
                duration(ran),
                accuracy_of(job),
            )
        )
    return table(headers, rows, right=frozenset({4, 5}))


METRIC_COLUMNS = (
    ("epoch", "EPOCH", 0),
    ("train_loss", "TRAIN LOSS", 4),
    ("train_accuracy", "TRAIN ACC", 4),
    ("val_loss", "VAL LOSS", 4),
    ("val_accuracy", "VAL ACC", 4),
    ("lr", "LR", 6),
    ("epoch_seconds", "SECONDS", 1),
    ("samples_per_second", "SAMPLES/S", 0),
)


def metrics_table(points: Sequence[dict[str, Any]]) -> list[str]:
    headers = [title for _key, title, _digits in METRIC_COLUMNS]
    rows = [
        [_metric_cell(point.get(key), digits) for key, _title, digits in METRIC_COLUMNS]
        for point in points
    ]
    return table(headers, rows, right=frozenset(range(len(headers))))


def checkpoint_table(checkpoints: Sequence[dict[str, Any]]) -> list[str]:
    """`taas checkpoints`: one row per kept checkpoint, with its epoch's validation scores."""
    headers = ("EPOCH", "STEP", "VAL LOSS", "VAL ACC", "SIZE", "SHA256", "NAME")
    rows = []
    for item in checkpoints:
        metrics = item["metrics"] or {}
        rows.append(
            (
                str(item["epoch"]),
                "-" if item["step"] is None else f"{item['step']:,}",
                _metric_cell(metrics.get("val_loss"), 4),
                _metric_cell(metrics.get("val_accuracy"), 4),
                size(item["size_bytes"]),
                item["sha256"][:12],
                item["name"],
            )
        )
    return table(headers, rows, right=frozenset({0, 1, 2, 3, 4}))


def _metric_cell(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def job_summary(
    job: dict[str, Any],
    points: Sequence[dict[str, Any]],
    artifacts: Sequence[dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """`taas status`: what a person asks about a job, then its epochs and its files."""
    queued, ran = queued_and_ran(job, now)
    spec, metrics = job["spec"], job["metrics"]
    fields = [
        ("job", f"{job['id']}  {job['name']}"),
        ("status", _status_text(job)),
        ("progress", _progress_of(job)),
        ("created", _clock(job["created_at"])),
        ("queued", duration(queued)),
        ("ran", duration(ran) + ("" if job["finished_at"] or ran is None else " so far")),
        ("device", job["device"] or "-"),
        (
            "model",
            f"{spec['model']['arch']} on {spec['dataset']}, {job['parameter_count']:,} weights",
        ),
        ("training", _recipe(spec["training"])),
    ]
    if job.get("waiting_for"):
        fields.insert(2, ("waiting", f"for {job['waiting_for']}"))
    if metrics["test_accuracy"] is not None:
        test = f"accuracy {metrics['test_accuracy']:.4f}, loss {number(metrics['test_loss'])}"
        fields.append(("test", test))
    if job["error"] and job["error"]["type"] == "cancelled":  # the user's choice, no error
        fields.append(("cancelled", job["error"]["message"]))
    elif job["error"]:
        fields.append(("error", f"{job['error']['type']}: {job['error']['message']}"))
    lines = [f"{label:<10}{value}" for label, value in fields]
    if points:
        lines += ["", *metrics_table(points)]
    if artifacts:
        rows = [(item["name"], size(item["size_bytes"]), item["kind"]) for item in artifacts]
        lines += ["", *table(("ARTIFACT", "SIZE", "KIND"), rows, right=frozenset({1}))]
    return lines


def _progress_of(job: dict[str, Any]) -> str:
    running = job["status"] in RUNNING
    return live_progress_text(job["progress"]) if running else progress_text(job["progress"])


def _status_text(job: dict[str, Any]) -> str:
    text = f"{job['status']} (attempt {job['attempt']})" if job["attempt"] else job["status"]
    if job.get("stop_reason"):
        text += f", stopped: {job['stop_reason']}"
    return text


def _recipe(training: dict[str, Any]) -> str:
    return (
        f"{counted(training['epochs'], 'epoch')}, batch {training['batch_size']}, "
        f"{training['optimizer']} lr {training['lr']:g}, {training['lr_schedule']} schedule"
    )


def _clock(value: str | None) -> str:
    moment = parse_time(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def event_line(event_type: str, data: dict[str, Any]) -> str:
    """A status or log event as `taas logs` prints it: local time, attempt, what happened."""
    when = _clock(data.get("created_at"))
    attempt = f"attempt {data['attempt']}" if data.get("attempt") else "-"
    what = data.get("status") if event_type == "status" else "log"
    message = data.get("message") or ""
    return f"{when}  {attempt:<10} {what:<10} {message}".rstrip()


def outcome_lines(end: dict[str, Any]) -> list[str]:
    """The end of a job: its status, its test metrics, its error."""
    lines = [f"{end['job_id']} {end['status']}"]
    if end.get("test_accuracy") is not None:
        lines[0] += f"  test_accuracy={end['test_accuracy']:.4f}"
        lines[0] += f" test_loss={number(end.get('test_loss'))}"
    if end.get("stop_reason") not in (None, "completed", end["status"]):
        lines[0] += f"  stopped: {end['stop_reason']}"
    if end.get("error") and end["error"]["type"] == "cancelled":
        lines.append(end["error"]["message"])  # "cancelled by the user ...": no error
    elif end.get("error"):
        lines.append(f"error ({end['error']['type']}): {end['error']['message']}")
    return lines
