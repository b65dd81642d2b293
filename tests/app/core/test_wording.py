"""Numbers read the same everywhere: binary byte sizes as the dashboard shows them, plurals that
agree, and an ending event that says what the job achieved."""

from __future__ import annotations

from fastapi.testclient import TestClient

from taas.app.core.wording import byte_size, counted
from tests.app.internal.test_router import claim, finish, submit, upload_model


def test_byte_sizes_are_binary_like_the_dashboards() -> None:
    sizes = [0, 512, 1023, 1024, 1_258_291, 5 * 1024**3]
    assert [byte_size(n) for n in sizes] == [
        "0 B",
        "512 B",
        "1023 B",
        "1.0 KiB",
        "1.2 MiB",
        "5.0 GiB",
    ]


def test_counts_agree_with_their_noun() -> None:
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]


def test_a_succeeded_job_ends_with_what_it_achieved_not_its_status_again(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    job_id = submit(api, auth)
    assert claim(api, worker_auth, job_id).status_code == 200
    upload_model(api, worker_auth, job_id)
    ended = finish(
        api,
        worker_auth,
        job_id,
        status="succeeded",
        test_accuracy=0.91234,
        test_loss=0.25,
        stop_reason="target_reached",
    )
    assert ended.status_code == 200, ended.text
    last = api.get(f"/v1/jobs/{job_id}/events", headers=auth).json()["items"][-1]
    assert (last["status"], last["message"]) == (
        "succeeded",
        "test accuracy 0.9123, test loss 0.2500; the target accuracy was reached",
    )


def test_a_running_job_says_its_device_and_acceleration_before_it_ends(
    api: TestClient, auth: dict[str, str], worker_auth: dict[str, str]
) -> None:
    from tests.app.internal.test_router import write

    job_id = submit(api, auth)
    assert claim(api, worker_auth, job_id).status_code == 200
    plan = {"mode": "auto", "data_on_device": True}
    beat = write(api, worker_auth, job_id, "heartbeat", {"device": "cpu", "acceleration": plan})
    assert beat.status_code == 200, beat.text
    running = api.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert (running["status"], running["device"], running["acceleration"]) == (
        "running",
        "cpu",
        plan,
    )
