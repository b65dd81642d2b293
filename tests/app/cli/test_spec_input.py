"""`taas submit` (and `taas sweep submit`) take the spec as a file, `-` for standard input, or
inline JSON; a missing or broken one is one sentence and exit status 2."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from taas.app.cli.main import cli
from taas.app.cli.session import read_json


def test_a_spec_comes_from_a_file_standard_input_or_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"dataset": "mnist"}')
    assert read_json(str(spec_file)) == {"dataset": "mnist"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"dataset": "cifar10"}'))
    assert read_json("-") == {"dataset": "cifar10"}
    assert read_json(' {"dataset": "synthetic"}') == {"dataset": "synthetic"}


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ("nowhere.json", "nowhere.json: no such file (give a JSON file, - for standard input"),
        ("{dataset: mnist}", "the JSON given is not valid JSON: Expecting property name"),
    ],
)
def test_a_spec_that_cannot_be_read_is_one_sentence_and_status_2(
    argument: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["submit", argument])
    assert result.exit_code == 2
    assert result.output.startswith(said), result.output


def test_empty_standard_input_says_to_pipe_the_spec_in() -> None:
    result = CliRunner().invoke(cli, ["submit", "-"], input="")
    assert result.exit_code == 2
    assert result.output.startswith("standard input is empty: pipe the JSON in")


def test_a_folder_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(typer.Exit):
        read_json(str(tmp_path))
