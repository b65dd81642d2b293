"""The dashboard in a real browser against a real `taas serve`, what a person sees and does
beyond jobs: datasets, sweeps, the API docs, the policy every page keeps, and the keyboard
alone. Elements are found by role and label, as a person (or a screen reader) finds them.
Every page a test opens is watched for CSP violations and for requests to any other host;
either fails the test (conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    expect,
)

from tests.e2e.conftest import Deployment
from tests.e2e.dashboard.browsing import (
    DESKTOP,
    JOB_SECONDS,
    QUICK_SPEC,
    Tenant,
    Watcher,
    open_job,
    press_tab_until_focused,
    sign_in,
    sweep_request,
)

pytestmark = pytest.mark.e2e


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
    expect(chart).not_to_contain_text("outside constraint")  # this sweep sets no constraint
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
    expect(scatter).to_contain_text(re.compile(r"Pareto front: (1 point|[23] points)"))
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
