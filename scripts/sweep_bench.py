"""Measure sweeps on Fashion-MNIST on this machine, in one run of one `taas serve`:

1. examples/sweep_fashion_asha.json (12 trials of 3 epochs, ASHA), then the same sweep without
   early stopping (same seed and method, so the same params trial for trial): epochs trained
   against max_trials x epochs, wall time, the best trial's validation and test accuracy;
2. examples/sweep_fastest_to_90.json: the fastest spec that reaches 90% validation accuracy.

From the repository root (Fashion-MNIST from `apt-get install dataset-fashion-mnist`):

    .venv/bin/python -m scripts.sweep_bench
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.processes import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_sweep(api: httpx.Client, request: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Submit, wait for the end; returns the sweep and its wall time in seconds."""
    started = time.monotonic()
    response = api.post("/v1/sweeps", json=request)
    response.raise_for_status()
    sweep_id = response.json()["id"]
    while True:
        body: dict[str, Any] = api.get(f"/v1/sweeps/{sweep_id}").json()
        if body["status"] != "running":
            return body, time.monotonic() - started
        time.sleep(2)


def epochs_trained(sweep: dict[str, Any]) -> int:
    return sum(trial["epochs_trained"] for trial in sweep["trials"])


def describe(label: str, sweep: dict[str, Any], seconds: float, epochs_each: int) -> None:
    best = sweep["best"]
    pruned = sum(1 for trial in sweep["trials"] if trial["stop_reason"] == "pruned")
    print(f"{label}: {sweep['status']} ({sweep['reason']})")
    print(f"  wall time {seconds:.0f} s; {len(sweep['trials'])} trials, {pruned} pruned")
    if epochs_each:
        planned = f"{sweep['max_trials']} x {epochs_each} = {sweep['max_trials'] * epochs_each}"
        print(f"  epochs trained {epochs_trained(sweep)} of {planned}")
    else:  # the epochs are one of the parameters
        print(f"  epochs trained {epochs_trained(sweep)}")
    if best is None:
        print("  no trial met the objective and constraint")
        return
    print(
        f"  best: trial {best['number']} {json.dumps(best['params'])}: objective "
        f"{best['values']}, test accuracy {best['test_accuracy']}"
    )


def measure(api: httpx.Client) -> None:
    asha = json.loads((EXAMPLES / "sweep_fashion_asha.json").read_text())
    plain = {**asha, "name": "fashion-no-early-stopping", "early_stopping": None}
    epochs = asha["spec"]["training"]["epochs"]
    for label, request in (("with ASHA", asha), ("without early stopping", plain)):
        sweep, seconds = run_sweep(api, request)
        describe(label, sweep, seconds, epochs)
    fastest = json.loads((EXAMPLES / "sweep_fastest_to_90.json").read_text())
    sweep, seconds = run_sweep(api, fastest)
    describe("fastest to 90% validation accuracy", sweep, seconds, 0)
    if sweep["best"] is not None:
        job = api.get(f"/v1/jobs/{sweep['best']['job_id']}").json()
        training = {key: job["spec"]["training"][key] for key in ("epochs", "batch_size", "lr")}
        print(f"  its train_seconds {sweep['best']['values'][0]:.1f}")
        print(
            f"  its spec: model {json.dumps(job['spec']['model'])}, training {json.dumps(training)}"
        )


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="taas-sweep-bench-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAAS_")}
    env |= {"TAAS_HOME": str(home), "TAAS_RECONCILE_SECONDS": "1"}
    port = free_port()
    taas = [sys.executable, "-m", "taas.app.cli"]
    with open(home / "serve.log", "wb") as log:
        serve = subprocess.Popen(
            [*taas, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        api_url = f"http://127.0.0.1:{port}"
        key_file = home / "api_key"
        for _ in range(300):
            if key_file.exists():
                try:
                    if httpx.get(f"{api_url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        with httpx.Client(base_url=api_url, headers=headers, timeout=60) as api:
            measure(api)
    finally:
        serve.terminate()
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
