"""One `taas serve` and one Chromium for all the dashboard's tests (each signs in as a tenant
of its own), and a fresh browser context per test, watched for what a page must not do."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    sync_playwright,
)

from tests.e2e.conftest import Deployment, start_embedded
from tests.e2e.dashboard.browsing import (
    CHROMIUM,
    DESKTOP,
    Tenant,
    Watcher,
    install_chromium,
    launch,
)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One `taas serve` for every dashboard test (each signs in as its own tenant)."""
    deployment = start_embedded(tmp_path_factory.mktemp("dashboard"))
    yield deployment
    deployment.stop()


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture
def tenant(server: Deployment, request: pytest.FixtureRequest) -> Iterator[Tenant]:
    # Named after the test, and unique: one server serves every dashboard test (repeated ones
    # too, whose names may differ only past the part kept).
    name = re.sub(r"\W", "-", request.node.name)[:48]
    key = server.create_key(f"{name}-{secrets.token_hex(4)}")
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
