"""The dashboard in a real browser against a real `taas serve`: what a person sees and does.

Chromium is the system's (/usr/bin/chromium, Debian's `chromium` package, which .ci/run
installs, and these tests too where it is missing and apt can); Playwright drives it and never
downloads a browser. Elements are found by role and
label, as a person (or a screen reader) finds them. Every page a test opens is watched for CSP
violations and for requests to any other host; either fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Request,
    expect,
    sync_playwright,
)

from tests.e2e.conftest import Deployment, start_embedded

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
# Small and fast on two cores: a few seconds of training, a few hundred logged steps.
QUICK_SPEC: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_options": {"train_size": 600, "test_size": 200},
    "model": {"arch": "mlp", "hidden_sizes": [32]},
    "training": {"epochs": 2, "batch_size": 64},
}
# Long enough to watch: Fashion-MNIST, about 940 steps per epoch, evaluated 4 times an epoch.
WATCHED_SPEC: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": 2, "batch_size": 64, "evals_per_epoch": 4},
}
# Runs far longer than any test waits: for cancelling.
LONG_SPEC: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "model": {"arch": "mlp", "hidden_sizes": [256, 256]},
    "training": {"epochs": 100, "batch_size": 32},
}
JOB_SECONDS = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One `taas serve` for the whole file (each test signs in as its own tenant)."""
    deployment = start_embedded(tmp_path_factory.mktemp("dashboard"))
    yield deployment
    deployment.stop()


def install_chromium() -> None:
    """Where Chromium is missing but apt can install it (as root on Debian), install it, as the
    test session starts the servers it needs: the test command needs nothing set up first."""
    if CHROMIUM.exists() or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    print(f"\n{CHROMIUM} is missing: installing Debian's chromium for the browser tests")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    install_chromium()
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard's browser tests need Debian's chromium "
            "package (`apt-get install -y chromium`; .ci/run installs it). Playwright's own "
            "browser download is not used.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


@dataclass
class Watcher:
    """What a page did that it must not: CSP violations, other hosts, script errors."""

    origin: str
    violations: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests_seen: int = 0

    def console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)

    def request(self, request: Request) -> None:
        self.requests_seen += 1
        if not request.url.startswith((self.origin + "/", "blob:", "data:")):
            self.foreign_requests.append(request.url)

    def check(self) -> None:
        assert self.violations == []
        assert self.foreign_requests == []
        assert self.errors == []


@dataclass
class Tenant:
    key: str
    api: httpx.Client

    def submit(self, spec: dict[str, Any], name: str) -> dict[str, Any]:
        response = self.api.post("/v1/jobs", json={**spec, "name": name})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_for(self, job_id: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_SECONDS
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.api.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            time.sleep(0.3)
        raise AssertionError(f"{job_id} is {job['status']}, not {statuses}, after {JOB_SECONDS}s")


@pytest.fixture
def tenant(server: Deployment, request: pytest.FixtureRequest) -> Iterator[Tenant]:
    key = server.create_key(re.sub(r"\W", "-", request.node.name)[:60])
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.api_url, headers=headers, timeout=30) as api:
        yield Tenant(key, api)


@pytest.fixture
def watcher(server: Deployment) -> Watcher:
    return Watcher(server.api_url)


@pytest.fixture
def page(browser: Browser, watcher: Watcher) -> Iterator[Page]:
    """A fresh browser context at 1280x800; the test fails if the watcher saw anything."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", watcher.console)
    page.on("request", watcher.request)
    page.on("pageerror", lambda error: watcher.errors.append(str(error)))
    yield page
    context.close()
    watcher.check()


def sign_in(page: Page, server: Deployment, key: str) -> None:
    page.goto(server.api_url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()


def open_job(page: Page, job: dict[str, Any]) -> None:
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name=job["name"]).click()
    expect(page.get_by_role("heading", name=job["name"], level=1)).to_be_visible()


def training_points(page: Page) -> int:
    """How many training-loss points the Loss chart says it draws (0 before the first)."""
    text = page.get_by_role("figure", name="Loss").inner_text()
    match = re.search(r"Training loss: (\d+) points", text)
    return int(match.group(1)) if match else 0


def test_sign_in_keeps_the_key_for_the_tab_and_sign_out_forgets_it(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    page.goto(server.api_url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
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
    page.get_by_label("Architecture").select_option("mlp")
    page.get_by_label("Hidden layer sizes").fill("32")  # the label follows the architecture
    page.get_by_label("Epochs").fill("0")
    page.get_by_label("Learning rate").fill("0")
    extra = {
        "dataset_options": {"train_size": 600},
        "training": {"batch_size": 64, "warmup_epochs": -1},
    }
    page.get_by_label("More settings (JSON)").fill(json.dumps(extra))
    page.get_by_role("button", name="Submit job").click()

    epochs, lr = page.get_by_label("Epochs"), page.get_by_label("Learning rate")
    expect(epochs).to_have_attribute("aria-invalid", "true")
    expect(epochs).to_have_accessible_description(re.compile("greater than or equal to 1"))
    expect(lr).to_have_attribute("aria-invalid", "true")
    expect(lr).to_have_accessible_description(re.compile("greater than 0"))
    # A field the form does not have: in the summary, named by its path.
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("3 problems, shown next to the fields and here:")
    expect(summary.get_by_role("listitem")).to_have_text(
        re.compile(r"^training\.warmup_epochs: .*greater than or equal to 0")
    )
    expect(page.get_by_label("Batch size")).not_to_have_attribute("aria-invalid", "true")
    assert tenant.api.get("/v1/jobs").json()["items"] == []

    epochs.fill("1")
    lr.fill("0.01")
    page.get_by_label("More settings (JSON)").fill(json.dumps(extra).replace("-1", "0"))
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
    while status.inner_text() == "running":
        counts.append(training_points(page))
        page.wait_for_timeout(150)
    running_counts = sorted(set(counts) - {0})
    assert len(running_counts) >= 2, f"the curve never grew while the job ran: {counts}"
    assert counts == sorted(counts)  # points are only ever added

    expect(status).to_have_text("succeeded", timeout=JOB_SECONDS * 1000)
    progress = page.get_by_role("region", name="Progress")
    expect(progress).to_contain_text(re.compile(r"Test accuracy: \d+\.\d\d%"))
    accuracy = tenant.api.get(f"/v1/jobs/{job['id']}").json()["metrics"]["test_accuracy"]
    expect(progress).to_contain_text(f"{accuracy * 100:.2f}%")
    assert accuracy > 0.7
    steps = tenant.api.get(f"/v1/jobs/{job['id']}/metrics?granularity=step").json()["items"]
    evaluations = sum(point["kind"] == "eval" for point in steps)
    assert evaluations >= 4
    expect(page.get_by_role("figure", name="Validation accuracy")).to_contain_text(
        f"Validation accuracy: {evaluations} points"
    )
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


def test_compare_two_jobs_on_one_chart(page: Page, server: Deployment, tenant: Tenant) -> None:
    first = tenant.submit(QUICK_SPEC, "compared-a")
    second = tenant.submit(
        {**QUICK_SPEC, "training": {**QUICK_SPEC["training"], "lr": 0.001}}, "compared-b"
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
    expect(chart).to_contain_text(re.compile(r"compared-a: \d+ points"))
    expect(chart).to_contain_text(re.compile(r"compared-b: \d+ points"))
    results = page.get_by_role("table", name="Final results")
    expect(results.get_by_role("row")).to_have_count(3)
    expect(results).to_contain_text("0.001")


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


def test_upload_a_dataset_and_delete_it(
    page: Page, server: Deployment, tenant: Tenant, tmp_path: Path
) -> None:
    upload = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(40, 8, 8), dtype=np.uint8)
    np.savez(upload, x=x, y=np.arange(40) % 4)
    sign_in(page, server, tenant.key)
    page.get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("row").filter(has_text="synthetic")).to_contain_text("yes")
    page.get_by_label("File").set_input_files(upload)
    page.get_by_label("Name (optional)").fill("tiny-upload")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status").filter(has_text="Uploaded")).to_contain_text("tiny-upload")
    row = page.get_by_role("row").filter(has_text="tiny-upload")
    expect(row).to_contain_text("40")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete tiny-upload").click()
    expect(row).to_have_count(0)
    names = [item["name"] for item in tenant.api.get("/v1/datasets").json()["items"]]
    assert "tiny-upload" not in names


def sweep_request(name: str, objectives: list[dict[str, str]]) -> dict[str, Any]:
    """Three quick trials over the learning rate, one at a time."""
    return {
        "name": name,
        "spec": QUICK_SPEC,
        "parameters": {"training.lr": {"values": [0.3, 0.03, 0.003]}},
        "method": "grid",
        "objective": objectives,
        "max_trials": 3,
        "max_parallel": 1,
    }


def test_sweep_page_ranks_trials_and_charts_them_as_they_end(
    page: Page, server: Deployment, tenant: Tenant, screenshots: Path
) -> None:
    accuracy = {"metric": "val_accuracy", "goal": "maximize"}
    seconds = {"metric": "train_seconds", "goal": "minimize"}
    created = tenant.api.post("/v1/sweeps", json=sweep_request("lr-sweep", [accuracy]))
    assert created.status_code == 201, created.text
    sweep = created.json()
    pareto = tenant.api.post("/v1/sweeps", json=sweep_request("two-goals", [accuracy, seconds]))
    assert pareto.status_code == 201, pareto.text

    sign_in(page, server, tenant.key)
    page.get_by_role("link", name="Sweeps", exact=True).click()
    page.get_by_role("link", name="lr-sweep").click()
    expect(page.get_by_role("heading", name="lr-sweep", level=1)).to_be_visible()
    # Opened while it runs: the page follows it to its end by itself.
    expect(page.get_by_role("status", name="Sweep status")).to_have_text(
        "succeeded", timeout=JOB_SECONDS * 3000
    )
    chart = page.get_by_role("figure", name="val_accuracy by trial")
    expect(chart).to_contain_text("best so far: 3 points")
    board = page.get_by_role("table", name=re.compile("Best first"))
    rows = board.get_by_role("row")
    expect(rows).to_have_count(4)  # a header and three trials
    ended = tenant.api.get(f"/v1/sweeps/{sweep['id']}").json()
    best = ended["best"]
    expect(rows.nth(1)).to_contain_text(f"{best['values'][0]:.2%}")
    expect(rows.nth(1)).to_contain_text(str(best["params"]["training.lr"]))
    page.screenshot(path=screenshots / "sweep-1280x800.png", full_page=True)

    rows.nth(1).get_by_role("link", name=f"Trial {best['number']}").click()
    expect(page.get_by_role("heading", name=f"lr-sweep trial {best['number']}")).to_be_visible()
    page.get_by_role("link", name=f"trial {best['number']}").click()
    expect(page.get_by_role("heading", name="lr-sweep", level=1)).to_be_visible()

    page.get_by_role("link", name="Sweeps", exact=True).click()
    page.get_by_role("link", name="two-goals").click()
    expect(page.get_by_role("status", name="Sweep status")).to_have_text(
        "succeeded", timeout=JOB_SECONDS * 3000
    )
    scatter = page.get_by_role("figure", name="val_accuracy against train_seconds")
    expect(scatter).to_contain_text(re.compile(r"Pareto front: [1-3] points"))
    expect(page.get_by_role("table", name=re.compile("Best first"))).to_contain_text("(front)")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete sweep").click()
    expect(page.get_by_role("heading", name="Sweeps", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="two-goals")).to_have_count(0)


def test_every_page_keeps_to_its_csp_and_to_this_host(
    page: Page, server: Deployment, tenant: Tenant, watcher: Watcher, screenshots: Path
) -> None:
    """Every page of the dashboard, visited: no CSP violation, no request to another host."""
    job = tenant.submit(QUICK_SPEC, "visited-job")
    tenant.wait_for(job["id"], "succeeded")
    sign_in(page, server, tenant.key)
    visits = [
        ("Jobs", "Jobs"),
        ("Submit", "Submit a job"),
        ("Compare", "Compare jobs"),
        ("Sweeps", "Sweeps"),
        ("Datasets", "Datasets"),
    ]
    for link, heading in visits:
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        page.screenshot(path=screenshots / f"{link.lower()}-1280x800.png", full_page=True)
    open_job(page, job)
    expect(page.get_by_role("figure", name="Loss")).to_contain_text("points, last")
    page.wait_for_timeout(500)  # late requests (the charts draw on the next frame)
    watcher.check()
    assert watcher.requests_seen > 20  # the watcher did see this page's traffic


def test_docs_render_swagger_ui_from_this_host(page: Page, server: Deployment) -> None:
    page.goto(server.api_url + "/docs")
    expect(page.get_by_role("button", name=re.compile("Authorize"))).to_be_visible()
    expect(page.get_by_text("/v1/jobs/{job_id}/cancel")).to_be_visible()
    assert httpx.get(server.api_url + "/openapi.json").json()["info"]["title"] == "taas"


def test_redoc_renders_from_this_host(browser: Browser, server: Deployment) -> None:
    """ReDoc's menu footer shows Redocly's logo from cdn.redoc.ly, unconditionally; the CSP
    blocks it (nothing leaves the browser). That one refusal is expected; nothing else is."""
    page = browser.new_page(viewport=DESKTOP)
    watcher = Watcher(server.api_url)
    page.on("console", watcher.console)
    page.on("request", watcher.request)
    page.goto(server.api_url + "/redoc")
    expect(page.get_by_role("heading", name="taas (1)")).to_be_visible()
    expect(page.get_by_text("Submit Job").first).to_be_attached()
    page.close()
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert [text for text in watcher.violations if logo not in text] == []
    assert set(watcher.foreign_requests) <= {logo}


def press_tab_until_focused(page: Page, target: Locator, most: int = 60) -> None:
    """Tab through the page, as a keyboard user does, until ``target`` has the focus (fails if
    it never does: it cannot be reached without a mouse). Checked in the page itself, not with
    to_be_focused, which also wants the browser window focused (not so on a busy headless run)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{target} never got the keyboard focus")


def test_the_keyboard_alone_signs_in_and_pages_through_the_jobs(
    page: Page, server: Deployment, tenant: Tenant
) -> None:
    # 22 jobs, cancelled at once: more than a page of 20, and nothing left to train.
    for number in range(22):
        job = tenant.submit(QUICK_SPEC, f"paged-{number:02d}")
        assert tenant.api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    page.goto(server.api_url + "/")
    press_tab_until_focused(page, page.get_by_label("API key"))
    page.keyboard.type(tenant.key)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Page 1, 20 jobs, newest first")).to_be_visible()
    expect(page.get_by_role("link", name="paged-21")).to_be_visible()

    press_tab_until_focused(page, page.get_by_role("button", name="Next page"))
    page.keyboard.press("Enter")
    expect(page.get_by_text("Page 2, 2 jobs, newest first")).to_be_visible()
    expect(page.get_by_role("link", name="paged-00")).to_be_visible()
    press_tab_until_focused(page, page.get_by_role("button", name="Previous page"))
    page.keyboard.press("Enter")
    expect(page.get_by_text("Page 1, 20 jobs, newest first")).to_be_visible()
