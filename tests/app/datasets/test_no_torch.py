"""The dataset listing's availability answers come without importing torch into the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Runs in a fresh interpreter: this test process has torch loaded already (other tests import it).
ASK_WITHOUT_TORCH = """
import json, sys
from pathlib import Path
from sqlalchemy.orm import Session
from taas.app.core import migrate
from taas.app.core.config import Settings
from taas.app.core.db import make_engine
from taas.app.datasets.service import builtin_availability
home = Path(sys.argv[1])
url = f"sqlite:///{home / 'taas.db'}"
migrate.upgrade(url)
plain = Settings(home=home)
downloading = Settings(home=home, data_dir=home / "data", allow_download=True)
with Session(make_engine(url)) as session:
    answers = {
        name: [
            [answer.available, answer.reason, answer.said_by_workers]
            for answer in (
                builtin_availability(session, name, plain),
                builtin_availability(session, name, downloading),
            )
        ]
        for name in ("fashion_mnist", "mnist", "cifar10", "synthetic")
    }
print(json.dumps(answers))
if "torch" in sys.modules:
    sys.exit("answering imported torch")
"""


def test_builtin_availability_does_not_import_torch(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", ASK_WITHOUT_TORCH, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    answers = json.loads(run.stdout)
    synthetic = [True, "generated from the job's dataset_options", False]
    assert answers["synthetic"][0] == synthetic
    for name in ("mnist", "cifar10"):  # neither has a system copy (Fashion-MNIST may)
        available, reason, said_by_workers = answers[name][0]
        # No worker has said: the API looked where a worker of this home looks, its data dir.
        assert (available, said_by_workers) == (False, False)
        assert str(tmp_path / "data") in reason
        # Nothing is in the empty data dir, but a worker allowed to download would fetch it.
        downloaded = f"downloaded into {tmp_path / 'data'} on first use"
        assert answers[name][1] == [True, downloaded, False]
