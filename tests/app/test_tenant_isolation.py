"""Another tenant's id is 404 on every public route that takes one, never 403 and never its data.

The routes come from the OpenAPI document, so a new route is covered as soon as it exists; a
path parameter of a kind this test cannot fill fails it until someone adds an owned value below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.app.datasets.test_router import npz_bytes, upload
from tests.app.internal.test_router import claim, finish, submit, upload_model
from tests.app.sweeps.test_router import submit as submit_sweep

PATH_PARAMETER = re.compile(r"\{([^}]+)\}")
API_KEY = "ApiKey"
# The owner's calls that end a resource go last, so every other call still finds it.
ENDING_CALLS = ("delete",)


def owned_path_values(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> dict[str, str]:
    """A value of each path parameter, owned by the tenant of ``auth``: a succeeded job with
    its model (so its stream ends and its artifact exists), an uploaded dataset, a presigned
    dataset upload begun, a sweep, a second API key, a webhook."""
    job_id = submit(api, auth)
    assert claim(api, worker_auth, job_id).status_code == 200
    upload_model(api, worker_auth, job_id)
    assert finish(api, worker_auth, job_id, status="succeeded", test_accuracy=0.9).is_success
    status, dataset = upload(api, auth, npz_bytes())
    assert status == 201, dataset
    key = api.post("/v1/keys", json={"name": "spare", "scope": "read"}, headers=auth)
    assert key.status_code == 201, key.text
    # A literal public address: the receiver's name is never resolved, nothing is sent.
    hook = {"url": "https://93.184.215.14/hook", "events": ["job.succeeded"]}
    webhook = api.post("/v1/webhooks", json=hook, headers=auth)
    assert webhook.status_code == 201, webhook.text
    begun = api.post(
        "/v1/dataset-uploads",
        json={"filename": "d.npz", "size_bytes": 3, "sha256": "0" * 64, "part_sha256": ["0" * 64]},
        headers=auth,
    )
    assert begun.status_code == 201, begun.text
    return {
        "upload_id": str(begun.json()["id"]),
        "job_id": job_id,
        "name": "model.safetensors",
        "dataset_id": str(dataset["id"]),
        "sweep_id": str(submit_sweep(api, auth)["id"]),
        "key_id": str(key.json()["id"]),
        "webhook_id": str(webhook.json()["id"]),
    }


def tenant_operations(api: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every operation that needs an API key and takes a path parameter."""
    return [
        (method, path)
        for path, item in api.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method, operation in item.items()
        if PATH_PARAMETER.search(path)
        and any(API_KEY in requirement for requirement in operation.get("security", []))
    ]


def test_another_tenants_id_is_404_on_every_route_that_takes_one(
    s3_home: Path,  # object storage: every route works there (presigned uploads only there)
    api: TestClient,
    auth: dict[str, str],
    worker_auth: dict[str, str],
    make_key: Callable[[str], str],
) -> None:
    values = owned_path_values(api, auth, worker_auth)
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    operations = tenant_operations(api)
    parameters = {name for _, path in operations for name in PATH_PARAMETER.findall(path)}
    unknown = sorted(parameters - set(values))
    assert not unknown, f"owned_path_values() has no value for path parameter(s) {unknown}"
    assert {"job_id", "dataset_id", "sweep_id"} <= parameters

    for method, path in operations:
        response = api.request(method, path.format(**values), headers=other)
        assert response.status_code == 404, (method, path, response.text)
        assert list(response.json()) == ["detail"], (method, path, response.text)  # no data

    # The owner reaches every one of them: the 404s above came from the ownership check.
    for method, path in sorted(operations, key=lambda operation: operation[0] in ENDING_CALLS):
        response = api.request(method, path.format(**values), headers=auth)
        assert response.status_code != 404, (method, path, response.text)
