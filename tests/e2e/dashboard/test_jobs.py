"""The dashboard in a real browser against a real `taas serve`, what a person sees and does
with jobs: sign in, list, submit, watch, download, compare, cancel and delete. Elements are
found by role and label, as a person (or a screen reader) finds them. Every page a test opens
is watched for CSP violations and for requests to any other host; either fails the test
(conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import (
    Page,
    expect,
)

from tests.e2e.conftest import Deployment
from tests.e2e.dashboard.browsing import (
    DESKTOP,
    JOB_SECONDS,
    LONG_SPEC,
    PHONE,
    QUICK_SPEC,
    WATCHED_SPEC,
    Tenant,
    open_job,
    painted_pixels,
    sign_in,
    training_points,
)

pytestmark = pytest.mark.e2e


def test_sign_in_keeps_the_key_for_the_tab_and_sign_out_forgets_it(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    page.goto(server.api_url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The hint names the key file, with commands set as code (no literal backticks).
    hint = page.get_by_label("API key")
    expect(hint).to_have_accessible_description(re.compile(r"saves it in \.taas/api_key"))
    expect(hint).not_to_have_accessible_description(re.compile("`"))
    page.get_by_label("API key").fill("taas_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That API key is not valid.")

    page.get_by_label("API key").fill(tenant.key)
    page.get_by_label("API key").press("Enter")  # the keyboard submits the form too
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(server.api_url + "/#/datasets")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_jobs_list_shows_a_job_and_follows_it_to_its_end(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    sign_in(page, server, tenant.key)
    job = tenant.submit(QUICK_SPEC, "listed-job")
    # Submitted after the page loaded: the event stream brings it in.
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="listed-job"))
    expect(row).to_be_visible()
    expect(row).to_contain_text("synthetic")
    expect(row.get_by_role("progressbar", name="Progress of listed-job")).to_be_visible()
    tenant.wait_for(job["id"], "succeeded")
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text(re.compile(r"\d+\.\d%"))  # its accuracy

    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_text("No failed jobs.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    expect(page.get_by_role("link", name="listed-job")).to_be_visible()


def test_submit_form_shows_each_error_beside_its_field_then_submits(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    sign_in(page, server, tenant.key)
    page.get_by_role("link", name="Submit", exact=True).click()
    expect(page.get_by_label("Dataset")).to_have_value("fashion_mnist")
    page.get_by_label("Name").fill("from-the-form")
    page.get_by_label("Dataset").select_option("synthetic")
    # The placeholders are the server's defaults for the architecture chosen.
    expect(page.get_by_label("Batch size")).to_have_attribute("placeholder", "128")
    page.get_by_label("Architecture").select_option("mlp")
    expect(page.get_by_label("Batch size")).to_have_attribute("placeholder", "256")
    page.get_by_label("Hidden layer sizes").fill("32")  # the label follows the architecture
    page.get_by_label("Epochs").fill("0")
    page.get_by_label("Learning rate").fill("0")
    # Over the server's configured maximum: said with the schema's errors, not after them.
    page.get_by_label("Batch size").fill("100000")
    extra = {"dataset_options": {"train_size": 600}, "training": {"warmup_epochs": -1}}
    page.get_by_label("More settings (JSON)").fill(json.dumps(extra))
    page.get_by_role("button", name="Submit job").click()

    epochs, lr = page.get_by_label("Epochs"), page.get_by_label("Learning rate")
    batch_size = page.get_by_label("Batch size")
    expect(epochs).to_have_attribute("aria-invalid", "true")
    expect(epochs).to_have_accessible_description(re.compile("greater than or equal to 1"))
    expect(lr).to_have_attribute("aria-invalid", "true")
    expect(lr).to_have_accessible_description(re.compile("greater than 0"))
    expect(batch_size).to_have_attribute("aria-invalid", "true")
    expect(batch_size).to_have_accessible_description(re.compile("at most 4096"))
    # A field the form does not have: in the summary, named by its path.
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("4 problems, shown next to the fields and here:")
    expect(summary.get_by_role("listitem")).to_have_text(
        re.compile(r"^training\.warmup_epochs: .*greater than or equal to 0")
    )
    assert tenant.api.get("/v1/jobs").json()["items"] == []

    epochs.fill("1")
    lr.fill("0.01")
    batch_size.fill("")
    extra = {"dataset_options": {"train_size": 600}, "training": {"batch_size": 64}}
    page.get_by_label("More settings (JSON)").fill(json.dumps(extra))
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("heading", name="from-the-form", level=1)).to_be_visible()
    (job,) = tenant.api.get("/v1/jobs").json()["items"]
    assert job["spec"]["model"] == {**job["spec"]["model"], "arch": "mlp", "hidden_sizes": [32]}
    assert job["spec"]["training"]["epochs"] == 1
    assert job["spec"]["training"]["batch_size"] == 64  # from the JSON
    assert job["spec"]["dataset_options"]["train_size"] == 600


def test_job_page_draws_the_loss_curve_live_and_shows_the_final_accuracy(
    page: Page, server: Deployment, tenant: Tenant, screenshots: Path
) -> None:
    sign_in(page, server, tenant.key)
    job = tenant.submit(WATCHED_SPEC, "watched-job")
    open_job(page, job)
    status = page.get_by_role("status", name="Job status")
    expect(status).to_have_text("running", timeout=JOB_SECONDS * 1000)

    counts = []  # points on the chart, sampled while the job runs
    epochs_said = set()  # the epoch the progress line names while it runs
    device_said = False  # the page was opened before the job started: it learns the device live
    while status.inner_text() == "running":
        counts.append(training_points(page))
        details = page.get_by_role("region", name="Details").inner_text()
        device_said = device_said or re.search(r"Device\s+cpu", details) is not None
        said = re.search(
            r"Epoch (\d+) of", page.get_by_role("region", name="Progress").inner_text()
        )
        if said:
            epochs_said.add(int(said.group(1)))
        page.wait_for_timeout(150)
    # The epoch running (1-based), never "Epoch 0": the first epoch is epoch 1.
    assert epochs_said, "the progress line never named an epoch"
    assert 0 not in epochs_said, epochs_said
    assert device_said, "the Details never named the device while the job ran"
    running_counts = sorted(set(counts) - {0})
    assert len(running_counts) >= 2, f"the curve never grew while the job ran: {counts}"
    assert counts == sorted(counts)  # points are only ever added

    expect(status).to_have_text("succeeded", timeout=JOB_SECONDS * 1000)
    progress = page.get_by_role("region", name="Progress")
    expect(progress).to_contain_text(re.compile(r"Test accuracy: \d+\.\d\d%"))
    epochs = WATCHED_SPEC["training"]["epochs"]
    expect(progress).to_contain_text(f"{epochs} of {epochs} epochs completed")
    accuracy = tenant.api.get(f"/v1/jobs/{job['id']}").json()["metrics"]["test_accuracy"]
    expect(progress).to_contain_text(f"{accuracy * 100:.2f}%")
    assert accuracy > 0.7
    steps = tenant.api.get(f"/v1/jobs/{job['id']}/metrics?granularity=step").json()["items"]
    evaluations = sum(point["kind"] == "eval" for point in steps)
    assert evaluations >= 4
    accuracy_chart = page.get_by_role("figure", name="Accuracy")
    expect(accuracy_chart).to_contain_text(f"Validation accuracy: {evaluations} points")
    epochs_run = WATCHED_SPEC["training"]["epochs"]
    expect(accuracy_chart).to_contain_text(f"Training accuracy: {epochs_run} points")
    trained = sum(point["kind"] == "train" for point in steps)
    assert training_points(page) == trained  # the replay and the live events did not double up
    expect(page.get_by_role("figure", name="Learning rate")).to_contain_text("points, last")
    expect(page.get_by_role("region", name="Events")).to_contain_text("succeeded")
    expect(page.get_by_role("region", name="Acceleration")).to_contain_text('"mode": "auto"')
    expect(page.get_by_role("region", name="Spec")).to_contain_text('"evals_per_epoch": 4')

    page.screenshot(path=screenshots / "job-1280x800.png")
    page.set_viewport_size(PHONE)
    page.screenshot(path=screenshots / "job-375.png")
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("link", name="watched-job")).to_be_visible()
    # Every column fits a phone's width: nothing cut off at the right ("Progre").
    overflow = page.locator(".table-wrap").evaluate("(wrap) => wrap.scrollWidth - wrap.clientWidth")
    assert overflow <= 0, f"the jobs table is {overflow}px wider than the screen"
    page.screenshot(path=screenshots / "jobs-375.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=screenshots / "jobs-1280x800.png")


def test_download_an_artifact_with_the_key(page: Page, server: Deployment, tenant: Tenant) -> None:
    job = tenant.submit(QUICK_SPEC, "downloaded-job")
    tenant.wait_for(job["id"], "succeeded")
    sign_in(page, server, tenant.key)
    open_job(page, job)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download model.json").click()
    download = download_info.value
    assert download.suggested_filename == "model.json"
    saved = Path(download.path()).read_bytes()
    assert saved == tenant.api.get(f"/v1/jobs/{job['id']}/artifacts/model.json").content
    assert json.loads(saved)["spec"]["name"] == "downloaded-job"
    # A kept checkpoint says which epoch it holds and how that epoch scored.
    [kept] = tenant.api.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
    accuracy = kept["metrics"]["val_accuracy"] * 100
    row = page.get_by_role("row", name=re.compile(kept["name"]))
    expect(row).to_contain_text(f"after epoch {kept['epoch']} · val accuracy {accuracy:.2f}%")


def test_compare_two_jobs_on_one_chart(
    page: Page, server: Deployment, tenant: Tenant, screenshots: Path
) -> None:
    first = tenant.submit(QUICK_SPEC, "compared-a")
    # One epoch: a single evaluation, which is a point on the charts and "1 point" in words.
    second = tenant.submit(
        {**QUICK_SPEC, "training": {**QUICK_SPEC["training"], "lr": 0.001, "epochs": 1}},
        "compared-b",
    )
    tenant.wait_for(first["id"], "succeeded")
    tenant.wait_for(second["id"], "succeeded")
    sign_in(page, server, tenant.key)
    compare = page.get_by_role("button", name=re.compile("Compare selected"))
    expect(compare).to_be_disabled()
    page.get_by_role("checkbox", name="Select compared-a").check()
    page.get_by_role("checkbox", name="Select compared-b").check()
    compare.click()
    chart = page.get_by_role("figure", name="Validation accuracy")
    for job in (first, second):
        evaluations = [
            point["val_accuracy"]
            for point in tenant.api.get(f"/v1/jobs/{job['id']}/metrics?granularity=step").json()[
                "items"
            ]
            if point["kind"] == "eval"
        ]
        count = "1 point" if len(evaluations) == 1 else f"{len(evaluations)} points"
        last = f"{evaluations[-1]:.4g}"  # as the page writes it: 4 significant digits
        expect(chart).to_contain_text(f"{job['name']}: {count}, last {last}")
    assert painted_pixels(chart, "--series-2") > 0  # compared-b's one evaluation is drawn
    results = page.get_by_role("table", name="Final results")
    expect(results.get_by_role("row")).to_have_count(3)
    expect(results).to_contain_text("0.001")
    page.screenshot(path=screenshots / "compare-1280.png", full_page=True)

    # On the job's own page, its one training-accuracy point is drawn too (a line series).
    open_job(page, second)
    accuracy = page.get_by_role("figure", name="Accuracy")
    expect(accuracy).to_contain_text("Training accuracy: 1 point")
    assert painted_pixels(accuracy, "--series-2") > 0


def test_cancel_a_running_job_then_delete_it(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    job = tenant.submit(LONG_SPEC, "cancelled-job")
    sign_in(page, server, tenant.key)
    open_job(page, job)
    status = page.get_by_role("status", name="Job status")
    expect(status).to_have_text("running", timeout=JOB_SECONDS * 1000)
    expect(page.get_by_role("button", name="Delete job")).to_be_hidden()  # 409 until it ends
    page.get_by_role("button", name="Cancel job").click()
    expect(status).to_have_text("cancelled", timeout=JOB_SECONDS * 1000)
    assert tenant.api.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete job").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    assert tenant.api.get(f"/v1/jobs/{job['id']}").status_code == 404
