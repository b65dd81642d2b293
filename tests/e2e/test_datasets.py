"""Datasets over real HTTP: each upload format trains to a succeeded job, workers fetch an upload
once, and the built-in Fashion-MNIST trains where the machine has it."""

from __future__ import annotations

import csv
import io
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from taas.client import Client
from taas.worker.datasets.files import SYSTEM_FASHION_MNIST
from tests.e2e.conftest import Deployment, start_embedded


@pytest.fixture
def deployment(shared_deployment: Deployment) -> Deployment:
    """These tests only submit and read jobs: they share the deployments of their process."""
    return shared_deployment


SMALL_MLP: dict[str, Any] = {
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "training": {"epochs": 8, "batch_size": 32, "lr": 0.01},
}


def separable_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 12, 12) uint8 images of 3 classes: a bright band in the top, middle or bottom."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, size=(count, 12, 12), dtype=np.uint8)
    for index, label in enumerate(labels):
        images[index, label * 4 : label * 4 + 4] += 180
    return images, labels.astype(np.int64)


def write_npz(path: Path, seed: int = 1) -> Path:
    x, y = separable_images(300, seed=seed)
    x_test, y_test = separable_images(60, seed=seed + 1)
    np.savez_compressed(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return path


def write_csv(path: Path, seed: int = 3) -> Path:
    """Two informative features and one noise column; the label column is called 'kind'."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["a", "kind", "b", "noise"])
        for index in range(300):
            label = index % 3
            writer.writerow([label * 2.0 + rng.normal(0, 0.3), label, -label, rng.normal()])
    return path


def write_zip(path: Path, seed: int = 4) -> Path:
    x, y = separable_images(150, seed=seed)
    with zipfile.ZipFile(path, "w") as archive:
        for index, (image, label) in enumerate(zip(x, y, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format="PNG")
            archive.writestr(f"shapes/band{label}/{index}.png", buffer.getvalue())
    return path


def unseen_seed() -> int:
    """A seed for data no other test (or run of this one) uploads to the shared deployment: its
    worker fetches a dataset once per content hash and says so."""
    return secrets.randbelow(2**31)


UPLOADS = {
    "npz": (write_npz, "data.npz", {}),
    "csv": (write_csv, "table.csv", {"label_column": "kind"}),
    "zip": (write_zip, "images.zip", {}),
}


@pytest.mark.parametrize("source", sorted(UPLOADS))
def test_each_upload_format_trains_to_a_succeeded_job(
    deployment: Deployment, tmp_path: Path, source: str
) -> None:
    write, filename, fields = UPLOADS[source]
    path = write(tmp_path / filename, seed=unseen_seed())
    with Client(deployment.api_url, deployment.create_key("acme")) as client:
        dataset = client.upload_dataset(path, name=f"my {source}", **fields)
        assert dataset["format"] == source
        assert dataset["num_classes"] == 3
        job = client.submit({"dataset": dataset["id"], **SMALL_MLP})
        final = client.wait(job["id"], timeout=120, poll_seconds=0.3)
        assert final["status"] == "succeeded", (final, deployment.logs())
        assert final["metrics"]["test_accuracy"] > 0.8  # 3 separable classes: chance is 0.33
        messages = [event["message"] for event in client.events(job["id"])]
        assert any("downloaded" in message for message in messages), messages
        if dataset["test_size"] == 0:  # CSV and this zip have no test split of their own
            assert any("held out" in message for message in messages), messages


def test_two_jobs_on_one_upload_fetch_it_once(deployment: Deployment, tmp_path: Path) -> None:
    path = write_npz(tmp_path / "data.npz", seed=unseen_seed())
    with Client(deployment.api_url, deployment.create_key("acme")) as client:
        dataset = client.upload_dataset(path)
        fetched = []
        for seed in (1, 2):
            spec = {"dataset": dataset["id"], **SMALL_MLP}
            spec["training"] = {**SMALL_MLP["training"], "seed": seed}
            final = client.wait(client.submit(spec)["id"], timeout=120, poll_seconds=0.3)
            assert final["status"] == "succeeded", (final, deployment.logs())
            messages = [event["message"] for event in client.events(final["id"])]
            fetched.append([message for message in messages if message.startswith("dataset ")])
    assert "downloaded" in fetched[0][0]
    assert "from this worker's cache" in fetched[1][0]


# .ci/run installs the package, so in CI a missing dataset fails the test instead of skipping it.
@pytest.mark.skipif(
    not SYSTEM_FASHION_MNIST.is_dir() and os.environ.get("CI") != "true",
    reason="needs Debian's dataset-fashion-mnist package",
)
def test_fashion_mnist_is_listed_available_and_trains(tmp_path: Path) -> None:
    embedded = start_embedded(tmp_path)
    try:
        with Client(embedded.api_url, embedded.create_key("acme")) as client:
            listed = {item["id"]: item for item in client.datasets()}
            assert listed["fashion_mnist"]["available"], listed["fashion_mnist"]
            spec = {"dataset": "fashion_mnist", **SMALL_MLP}
            spec["training"] = {**SMALL_MLP["training"], "epochs": 1, "batch_size": 512}
            final = client.wait(client.submit(spec)["id"], timeout=180, poll_seconds=0.5)
        assert final["status"] == "succeeded", (final, embedded.logs())
        assert final["metrics"]["test_accuracy"] > 0.75
    finally:
        for process in embedded.processes:
            process.stop()
