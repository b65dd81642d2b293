"""The documentation stays true to the code and builds: the job spec reference is what the
generator writes from the schema today, the site builds with `mkdocs build --strict` (so every
link and anchor between pages resolves), and the README stays a short front door that keeps the
two commands CI runs."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

from scripts import spec_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 150
# The install + serve and install + test lines at the top of the README, byte for byte.
README_COMMANDS = (
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/taas serve",
    "python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/pytest",
)


def test_job_spec_reference_matches_the_schema() -> None:
    page = spec_reference.PAGE
    assert page.read_text(encoding="utf-8") == spec_reference.render(), (
        f"{page.relative_to(ROOT)} is out of date with the job spec: run "
        f"`{spec_reference.COMMAND}` from the repository root and commit the page"
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,  # the home page includes README.md by a path relative to the repository root
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's notice on every start
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    home = (site / "index.html").read_text(encoding="utf-8")
    home_text = html.unescape(re.sub(r"<[^>]+>", "", home))
    for command in README_COMMANDS:
        assert command in home_text, f"the home page no longer shows the README's `{command}`"
    # The site loads nothing from another host: no web fonts (theme.font: false).
    assert "fonts.googleapis.com" not in home
    assert "fonts.gstatic.com" not in home


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: it is the front door; "
        "move the details into a page under docs/"
    )
    for command in README_COMMANDS:
        assert command in lines, f"README.md lost the line `{command}` that CI runs"


def test_readme_links_to_pages_that_exist() -> None:
    targets = re.findall(r"\]\(((?!https?:)[^)#\s]+)(?:#[^)\s]*)?\)", README.read_text("utf-8"))
    assert targets, "README.md links to no page"
    missing = [target for target in targets if not (ROOT / target).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
