"""The OpenAPI document is a contract a generic client can trust: Schemathesis generates requests
from it (valid and invalid, then sequences that follow its links) against a real `taas api` on
PostgreSQL, and checks every answer against the document: no 5xx, only documented statuses,
bodies and headers as declared, invalid input refused, valid input accepted, a deleted resource
gone. Settings and the few documented exceptions are in schemathesis.toml beside this file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Deployment, start_production

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = "20240601"
MAX_EXAMPLES = "15"  # per operation and phase: about 1,900 requests, half a minute on 2 cores
# Not fuzzed:
# - /internal: the workers' routes, driven by the worker's own tests and the e2e suites;
# - the two Server-Sent Events streams: a stream of a live job (and the tenant's) stays open by
#   design, and a request-response fuzzer waits for a body that never ends. Their statuses
#   are checked in tests/app/stream/test_router.py.
EXCLUDED_PATHS = r"^/internal/|/stream$"
# - revoking a key: the stateful phase follows GET /v1/keys to DELETE /v1/keys/{key_id} and
#   revokes the very key the run uses, leaving every later request 401. Revocation is checked in
#   tests/app/auth/test_keys.py.
EXCLUDED_OPERATION = "DELETE /v1/keys/{key_id}"
# Jobs stay queued (no worker runs): this bounds what the run leaves in the queue.
MAX_ACTIVE_JOBS = "50"


@pytest.fixture
def api_without_workers(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    deployment = start_production(
        tmp_path, postgres_url, workers=0, TAAS_MAX_ACTIVE_JOBS_PER_TENANT=MAX_ACTIVE_JOBS
    )
    yield deployment
    deployment.stop()


def test_every_answer_matches_the_openapi_document(
    api_without_workers: Deployment, tmp_path: Path
) -> None:
    key = api_without_workers.create_key("contract")
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{api_without_workers.api_url}/openapi.json",
        "--checks=all",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--exclude-path-regex={EXCLUDED_PATHS}",
        f"--exclude-name={EXCLUDED_OPERATION}",
        "--header",
        f"Authorization: Bearer {key}",
        "--request-timeout=10",
        "--workers=1",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = result.stdout + result.stderr
    print(output[-700:])  # the summary, for the record
    assert result.returncode == 0, output + "\n" + api_without_workers.logs()
    summary = output.strip().splitlines()[-1]
    assert " passed" in output, output
    assert "failure" not in summary, output
    print(summary)  # shown with -s or -rP
