"""The user's CLI against a real `taas serve`, and a clean Ctrl-C of the whole service."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taas.app.cli.job_feed import JobEvent, job_events
from taas.client import Client
from tests.e2e.conftest import Deployment, start_embedded
from tests.e2e.processes import child_pids, is_alive, taas_command

SMOKE_SPEC = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 600, "test_size": 200, "noise": 1.5},
    "training": {"epochs": 2},
}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One `taas serve` for the module's tests, each with jobs of its own: a start costs
    seconds of imports."""
    # Progress every tenth of a second: an epoch of the watched job takes half a second on a
    # fast CPU, and the watch test wants to see progress within each epoch.
    deployment = start_embedded(tmp_path_factory.mktemp("serve"), TAAS_HEARTBEAT_SECONDS="0.1")
    yield deployment
    deployment.processes[0].stop()


def taas(deployment: Deployment, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would: key from $TAAS_HOME/api_key, server from TAAS_API_URL."""
    return subprocess.run(
        taas_command(*args),
        cwd=cwd,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_first_start_saves_a_private_api_key(embedded: Deployment) -> None:
    key_file = embedded.home / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("taas_")
    assert key_file.read_text().strip() in embedded.processes[0].log()  # printed once


def test_submit_wait_list_status_download_cancel(embedded: Deployment, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SMOKE_SPEC))

    submitted = taas(embedded, "submit", str(spec_file), "--wait", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.splitlines()[0]
    assert job_id.startswith("job_")
    assert "epoch 2/2" in submitted.stdout  # the progress line
    assert f"{job_id} succeeded" in submitted.stdout
    assert "test_accuracy=" in submitted.stdout

    listed = taas(embedded, "jobs", cwd=tmp_path)
    assert job_id in listed.stdout
    assert "succeeded" in listed.stdout

    status = json.loads(taas(embedded, "status", job_id, "--json", cwd=tmp_path).stdout)
    assert status["id"] == job_id
    assert status["status"] == "succeeded"

    downloaded = taas(embedded, "download", job_id, "--out", "model", cwd=tmp_path)
    assert downloaded.returncode == 0, downloaded.stderr
    assert {Path(line).name for line in downloaded.stdout.split()} == {
        "checkpoint-epoch1.pt",  # 2 epochs: a checkpoint after the first
        "metrics.csv",
        "model.json",
        "model.safetensors",
    }
    assert (tmp_path / "model" / "model.safetensors").stat().st_size > 0

    refused = taas(embedded, "cancel", job_id, cwd=tmp_path)
    assert refused.returncode == 1
    assert "409" in refused.stderr
    assert "has already ended (succeeded)" in refused.stderr


SMOKE_SWEEP = {
    "name": "cli-sweep",
    "spec": SMOKE_SPEC,
    "parameters": {
        "training.lr": {"values": [0.3, 0.003]},
        "model.activation": {"values": ["relu", "gelu"]},
    },
    "method": "grid",
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "max_trials": 4,
    "max_parallel": 2,
}


def test_sweep_submit_wait_status_best_download(embedded: Deployment, tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps(SMOKE_SWEEP))

    submitted = taas(embedded, "sweep", "submit", str(sweep_file), "--wait", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    lines = submitted.stdout.splitlines()
    sweep_id = lines[0]
    assert sweep_id.startswith("swp_")
    assert f"{sweep_id} running: 0/4 trials ended (2 queued)" in lines[1]
    assert any(f"{sweep_id} succeeded: 4/4 trials ended" in line for line in lines)
    board = lines[lines.index("") + 1 :]
    assert board[0].startswith("sweep      " + sweep_id)

    with Client(embedded.api_url, (embedded.home / "api_key").read_text().strip()) as api:
        best = api.sweep(sweep_id)["best"]
    status = taas(embedded, "sweep", "status", sweep_id, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    table = status.stdout[status.stdout.index("RANK") :].splitlines()
    assert len(table) == 5  # a header and four trials
    assert table[1].split()[:3] == ["1", str(best["number"]), "succeeded"]
    assert best["job_id"] in table[1]

    chosen = taas(embedded, "sweep", "best", sweep_id, "--download", "best", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.startswith(f"trial {best['number']} ({best['job_id']}): val_accuracy=")
    assert (tmp_path / "best" / "model.safetensors").stat().st_size > 0
    model_card = json.loads((tmp_path / "best" / "model.json").read_text())
    assert model_card["spec"]["training"]["lr"] == best["params"]["training.lr"]

    listed = taas(embedded, "sweep", "list", cwd=tmp_path)
    assert sweep_id in listed.stdout
    unknown = taas(embedded, "sweep", "status", "swp_nope", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "sweep 'swp_nope' not found (HTTP 404)" in unknown.stderr


ANSI_OR_RETURN = re.compile(r"\x1b\[|\r")


class CuttableProxy:
    """A TCP proxy to a local port whose open connections can be cut, as a flaky network or a
    load balancer's restart would."""

    def __init__(self, backend_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.backend_port = backend_port
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return  # closed
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            with self.lock:
                self.open += [client, backend]
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            connections, self.open = self.open, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


# Enough batches (12000 / 64 = 188 per epoch) that progress is reported within each epoch, and
# that training outlasts the watcher's reconnection after the cut (its first pause is 0.5 s): a
# watcher back only after the last batch finds no progress events to replay.
WATCHED_SPEC = {
    "name": "smoke",
    "dataset": "synthetic",
    "dataset_options": {"train_size": 12000, "test_size": 200, "noise": 1.5},
    "training": {"epochs": 2, "batch_size": 64, "evals_per_epoch": 2},
}


def test_watch_status_logs_and_jobs_read_as_text(embedded: Deployment, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(WATCHED_SPEC))

    job_id = taas(embedded, "submit", str(spec_file), cwd=tmp_path).stdout.strip()
    # `taas watch` to a pipe, through a proxy that drops the connection once the job runs; and
    # this test reads the same stream as it happens (an ended job's stream keeps only its last
    # progress event).
    proxy = CuttableProxy(embedded.port)
    watching = subprocess.Popen(
        taas_command("watch", job_id),
        cwd=tmp_path,
        env={**embedded.env, "TAAS_API_URL": f"http://127.0.0.1:{proxy.port}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: list[JobEvent] = []
    with Client(embedded.api_url, (embedded.home / "api_key").read_text().strip()) as client:
        reader = threading.Thread(target=lambda: events.extend(job_events(client, job_id)))
        reader.start()
        output = ""
        assert watching.stdout is not None
        for line in watching.stdout:
            output += line
            if "running (attempt 1)" in line:
                proxy.cut()
        reader.join(timeout=60)
    proxy.close()

    _rest, errors = watching.communicate(timeout=30)  # closes the pipes
    assert watching.returncode == 0, errors
    lost = [line for line in output.splitlines() if "stream lost" in line]
    assert len(lost) == 1, output
    assert re.search(r"stream lost \(.+\); reconnecting after event \d+$", lost[0])
    assert not ANSI_OR_RETURN.search(output)  # a pipe gets plain lines
    said = [line[9:] for line in output.splitlines()]  # without the time of day
    assert said[0] == "queued: job accepted and queued"
    # Progress lines name the epoch running (1-based); they may repeat across the reconnection.
    shown_once = [line for line in said if not line.startswith(("epoch 1/2  ", "epoch 2/2  "))]
    assert len(shown_once) == len(set(shown_once)), output  # resumed: nothing said twice
    assert any(line.startswith("running (attempt 1)") for line in said), output
    assert any(re.match(r"epoch [12]/2  \d+%  [\d,]+ samples/s  eta ", line) for line in said), (
        output
    )
    assert any(re.match(r"eval at epoch 0\.\d\d: val_loss ", line) for line in said), output
    assert any(line.startswith("epoch 1/2 done: train_loss ") for line in said), output
    assert said[-1].startswith(f"{job_id} succeeded  test_accuracy=")

    # The stream the CLI reads: progress moved within each epoch.
    assert all(event.id is not None for event in events)  # streamed, not polled
    mid_epoch = [
        (event.data["epoch"], event.data["fraction"])
        for event in events
        if event.type == "progress"
        and 0 < (event.data["batches_done"] or 0) < event.data["batches_per_epoch"]
    ]
    assert len(mid_epoch) >= 2, mid_epoch  # every 0.1 s; an epoch takes 0.3 s or more
    for epoch, fraction in mid_epoch:
        assert epoch / 2 < fraction < (epoch + 1) / 2  # inside the epoch, not at its ends
    assert mid_epoch == sorted(mid_epoch)

    watched = taas(embedded, "watch", job_id, cwd=tmp_path)  # an ended job: its history, then out
    assert watched.returncode == 0
    assert watched.stdout.splitlines()[-1][9:] == said[-1]

    summary = taas(embedded, "status", job_id, cwd=tmp_path).stdout.splitlines()
    assert summary[0] == f"job       {job_id}  smoke"
    assert summary[1] == "status    succeeded (attempt 1), stopped: completed"
    assert summary[2] == "progress  2/2 epochs done (100%)"
    assert re.search(r"^ran +\d+\.\ds$", "\n".join(summary), re.MULTILINE)
    epochs = summary.index(next(line for line in summary if line.startswith("EPOCH")))
    assert [line.split()[0] for line in summary[epochs + 1 : epochs + 3]] == ["1", "2"]
    assert any(re.match(r"model\.safetensors +\d+\.\d [KM]iB +model$", line) for line in summary)

    logged = taas(embedded, "logs", job_id, cwd=tmp_path).stdout.splitlines()
    assert next(line.split()[4] for line in logged if "attempt 1" in line) == "running"
    # The ending event says what the job achieved, not its status twice.
    assert logged[-1].split()[4:7] == ["succeeded", "test", "accuracy"]
    assert logged[-1].endswith("; every epoch ran")
    followed = taas(embedded, "logs", job_id, "--follow", cwd=tmp_path)
    assert followed.stdout.splitlines()[:-1] == logged  # then the outcome
    assert followed.stdout.splitlines()[-1].startswith(f"{job_id} succeeded")

    kept = taas(embedded, "checkpoints", job_id, cwd=tmp_path).stdout.splitlines()
    headers = ["EPOCH", "STEP", "VAL", "LOSS", "VAL", "ACC", "SIZE", "SHA256", "NAME"]
    assert kept[0].split() == headers
    assert kept[1].split()[0] == "1"  # the first of two epochs (the second ends the job)
    assert kept[1].endswith("checkpoint-epoch1.pt")

    table = taas(embedded, "jobs", cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["ID", "STATUS", "NAME", "PROGRESS", "QUEUED", "RAN", "ACCURACY"]
    row = next(line for line in table if line.startswith(job_id)).split()
    assert row[1:6] == ["succeeded", "smoke", "2/2", "epochs", "done"]
    assert re.fullmatch(r"0\.\d{4}", row[-1])

    # A job that did not succeed: its outcome, and a non-zero exit status that says which.
    spec_file.write_text(json.dumps({**SMOKE_SPEC, "training": {"epochs": 50}}))
    job_id = taas(embedded, "submit", str(spec_file), cwd=tmp_path).stdout.strip()
    assert taas(embedded, "cancel", job_id, cwd=tmp_path).returncode == 0

    watched = taas(embedded, "watch", job_id, cwd=tmp_path)

    assert watched.returncode == 4  # documented in `taas watch --help`
    outcome = [line[9:] for line in watched.stdout.splitlines()[-2:]]
    assert outcome[0].startswith(f"{job_id} cancelled")  # with test metrics if it had started
    assert outcome[1].startswith("cancelled by the user")  # a choice, not an error
    help_text = " ".join(taas(embedded, "watch", "--help", cwd=tmp_path).stdout.split())
    assert "4 it was cancelled" in help_text


def test_serve_says_where_things_are_and_errors_read_as_sentences(
    embedded: Deployment, tmp_path: Path
) -> None:
    console = embedded.processes[0].log()
    url = embedded.api_url
    assert f"dashboard   {url}/" in console
    assert f"API docs    {url}/docs" in console
    assert f"API key     {embedded.home / 'api_key'}" in console
    assert f"{embedded.home / 'logs' / 'worker.log'} (worker)" in console
    assert "Ctrl-C" in console
    worker_log = embedded.home / "logs" / "worker.log"
    deadline = time.monotonic() + 60
    while "ready" not in worker_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "celery@" in worker_log.read_text()  # Celery's banner went to the worker's log,
    assert "celery@" not in embedded.processes[0].log()  # not to the console
    assert "GET /readyz" in (embedded.home / "logs" / "api.log").read_text()
    assert "GET /readyz" not in console  # nor did each request to the API

    unknown = taas(embedded, "status", "job_" + "0" * 24, cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(f"unknown job job_{'0' * 24}:")
    not_watched = taas(embedded, "watch", "job_" + "0" * 24, cwd=tmp_path)
    assert not_watched.returncode == 1
    assert not_watched.stderr.startswith(f"unknown job job_{'0' * 24}:")

    spec_file = tmp_path / "typo.json"
    spec_file.write_text(json.dumps({"dataset": "fashion_mnst"}))
    rejected = taas(embedded, "submit", str(spec_file), cwd=tmp_path)
    assert rejected.returncode == 1
    assert rejected.stderr.splitlines()[1].endswith("; did you mean `fashion_mnist`?")

    wrong_key = {**embedded.env, "TAAS_API_KEY": "taas_not_a_key"}
    result = subprocess.run(
        taas_command("jobs"), env=wrong_key, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("the API key was refused")
    assert "the key in TAAS_API_KEY" in result.stderr
    for output in (unknown.stderr, not_watched.stderr, rejected.stderr, result.stderr):
        assert "Traceback" not in output


def test_the_cli_says_a_sentence_for_input_that_cannot_work(
    embedded: Deployment, tmp_path: Path
) -> None:
    """Each of these printed a traceback (or waited forever) before."""
    said = {}
    for name, args in {
        "empty id": ("status", ""),
        "empty id watched": ("watch", ""),
        "out is a file": ("download", "job_" + "0" * 24, "--out", str(tmp_path / "a-file")),
        "expiry past 9999": ("keys", "create", "--expires-in", "999999999d"),
        "port out of range": ("serve", "--port", "99999"),
    }.items():
        (tmp_path / "a-file").touch()
        said[name] = taas(embedded, *args, cwd=tmp_path)
        assert "Traceback" not in said[name].stderr, name
    assert said["empty id"].returncode == 1
    assert said["empty id"].stderr.strip() == "expected a job id (a non-empty string), got ''"
    assert said["empty id watched"].stderr == said["empty id"].stderr
    assert said["out is a file"].returncode == 1  # the job is unknown: said before any write
    assert said["out is a file"].stderr.startswith(f"unknown job job_{'0' * 24}")
    assert said["expiry past 9999"].returncode == 2
    assert "reaches past the year 9999" in said["expiry past 9999"].stderr
    assert said["port out of range"].returncode == 2
    assert "Input should be less than or equal to 65535" in said["port out of range"].stderr

    # A second `taas serve` on the same TAAS_HOME would run a second worker on its database.
    second = taas(embedded, "serve", "--port", "1", cwd=tmp_path)
    assert second.returncode == 1
    assert second.stderr.startswith("taas: another `taas serve` (pid ")
    assert f"is running on {embedded.home}" in second.stderr


def test_cli_reports_bad_spec_and_missing_key(embedded: Deployment, tmp_path: Path) -> None:
    spec_file = tmp_path / "typo.json"
    spec_file.write_text(json.dumps({"dataset": "synthetic", "training": {"epocs": 3}}))
    rejected = taas(embedded, "submit", str(spec_file), cwd=tmp_path)
    assert rejected.returncode == 1
    assert "422" in rejected.stderr
    assert "epocs" in rejected.stderr

    no_key = {**embedded.env, "TAAS_HOME": str(tmp_path / "elsewhere")}
    result = subprocess.run(
        taas_command("jobs"), cwd=tmp_path, env=no_key, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "no API key" in result.stderr


def test_ctrl_c_stops_api_and_worker_without_orphans(tmp_path: Path) -> None:
    deployment = start_embedded(tmp_path)
    serve = deployment.processes[0]
    assert serve.popen is not None
    workers = child_pids(serve.popen.pid)
    assert len(workers) == 1, "taas serve should run exactly one worker process"
    worker_tree = [workers[0], *child_pids(workers[0])]

    started = time.monotonic()
    serve.popen.send_signal(signal.SIGINT)
    assert serve.popen.wait(timeout=30) == 0
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 10
    while any(is_alive(pid) for pid in worker_tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(is_alive(pid) for pid in worker_tree), "worker processes outlived taas serve"


def test_datasets_list_is_a_table_that_says_why_a_built_in_is_missing(
    embedded: Deployment, tmp_path: Path
) -> None:
    listed = taas(embedded, "datasets", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "SHAPE", "CLASSES", "TRAIN", "AVAILABLE"]
    synthetic = next(line for line in lines if line.startswith("synthetic ")).split()
    assert synthetic[2:] == ["1x28x28", "10", "2,000", "yes"]
    missing = [line.split()[0] for line in lines[1:] if line.endswith(" no")]
    for name in missing:  # each unavailable built-in is followed by the server's reason
        assert any(line.startswith(f"{name}: ") for line in lines), name
