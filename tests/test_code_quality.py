"""The code stays lint-clean, formatted and type-checked: CI fails otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "."],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize(
    "tool",
    [pytest.param(tool, marks=[pytest.mark.slow] if tool == "mypy" else []) for tool in TOOLS],
)
def test_tool_is_clean(tool: str) -> None:
    result = subprocess.run(
        TOOLS[tool], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{tool} found problems:\n{result.stdout}\n{result.stderr}"
