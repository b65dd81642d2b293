"""What the dashboard's browser tests share: Chromium's settings, the specs they train, a
tenant's API client, the watcher of what a page must not do, and a person's steps (sign in, open
a job). Chromium is the system's (/usr/bin/chromium, Debian's `chromium` package, which .ci/run
installs, and these tests too where it is missing and apt can); Playwright drives it and never
downloads a browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Request,
    expect,
)

from tests.e2e.conftest import Deployment

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
# Long enough to watch: Fashion-MNIST, about 1,900 steps per epoch, evaluated 4 times an epoch.
# It must outlast several heartbeats (0.5 s) even on an idle machine, where the trainer does an
# epoch of this in under a second: a test that samples the page while it runs must see it grow.
WATCHED_SPEC: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "model": {"arch": "mlp", "hidden_sizes": [64]},
    "training": {"epochs": 3, "batch_size": 32, "evals_per_epoch": 4},
}
# Runs far longer than any test waits: for cancelling.
LONG_SPEC: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "model": {"arch": "mlp", "hidden_sizes": [256, 256]},
    "training": {"epochs": 100, "batch_size": 32},
}
JOB_SECONDS = 90.0


def install_chromium() -> None:
    """Where Chromium is missing but apt can install it (as root on Debian), install it, as the
    test session starts the servers it needs: the test command needs nothing set up first."""
    if CHROMIUM.exists() or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    print(f"\n{CHROMIUM} is missing: installing Debian's chromium for the browser tests")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


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
    match = re.search(r"Training loss: (\d+) points?", text)
    return int(match.group(1)) if match else 0


# Counts the pixels of a chart's canvas drawn in a theme colour (`--series-2`), give or take
# anti-aliasing: whether a series is on the canvas at all, which its caption cannot say.
PAINTED_PIXELS_JS = """([figure, variable]) => {
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(variable).trim();
  const hex = probe.fillStyle.slice(1);
  const want = [0, 2, 4].map((at) => parseInt(hex.slice(at, at + 2), 16));
  const canvas = figure.querySelector("canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let at = 0; at < pixels.length; at += 4) {
    const near = want.every((value, channel) => Math.abs(pixels[at + channel] - value) < 40);
    if (near && pixels[at + 3] > 200) count += 1;
  }
  return count;
}"""


def painted_pixels(figure: Locator, css_variable: str) -> int:
    figure.locator("canvas").wait_for()
    count: int = figure.evaluate(
        "(figure, variable) => (" + PAINTED_PIXELS_JS + ")([figure, variable])", css_variable
    )
    return count


def press_tab_until_focused(page: Page, target: Locator, most: int = 60) -> None:
    """Tab through the page, as a keyboard user does, until ``target`` has the focus (fails if
    it never does: it cannot be reached without a mouse). Checked in the page itself, not with
    to_be_focused, which also wants the browser window focused (not so on a busy headless run)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{target} never got the keyboard focus")


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
