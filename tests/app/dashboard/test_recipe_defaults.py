"""The submit form's placeholders are the server's defaults for each architecture's recipe."""

from __future__ import annotations

import json
import re
from pathlib import Path

from taas.app.spec import JobSpec, normalized

SUBMIT_JS = (
    Path(__file__).resolve().parents[3]
    / "app"
    / "dashboard"
    / "static"
    / "js"
    / "pages"
    / "submit.js"
)


def test_the_forms_recipe_defaults_are_the_servers() -> None:
    table = re.search(r"const RECIPE_DEFAULTS = (\{.*?\n\});", SUBMIT_JS.read_text(), re.S)
    assert table is not None
    as_json = re.sub(
        r"(\w[\w-]*|\"[\w-]+\"):", lambda m: f'"{m.group(1).strip(chr(34))}":', table.group(1)
    )
    shown = json.loads(re.sub(r",(\s*[}\]])", r"\1", as_json))
    for arch, placeholders in shown.items():
        training = normalized(JobSpec(dataset="fashion_mnist", model={"arch": arch}))["training"]
        assert placeholders == {
            "epochs": str(training["epochs"]),
            "lr": str(training["lr"]),
            "batch-size": str(training["batch_size"]),
        }, arch
