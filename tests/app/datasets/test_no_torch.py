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
from taas.app.datasets.service import builtin_availability
data_dir = Path(sys.argv[1])
answers = {
    name: [builtin_availability(name, None, False), builtin_availability(name, data_dir, True)]
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
    assert answers["synthetic"][0] == [True, "generated from the job's dataset_options"]
    for name in ("mnist", "cifar10"):  # neither has a system copy (Fashion-MNIST may)
        assert not answers[name][0][0]  # no data dir
        # Nothing is in the empty data dir, but a worker allowed to download would fetch it.
        assert answers[name][1] == [True, f"downloaded into {tmp_path} on first use"]
