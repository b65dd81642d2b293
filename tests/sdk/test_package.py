"""`import taas` is what every process of the service does first: it must stay light."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import taas


def test_importing_taas_loads_neither_the_http_client_nor_torch() -> None:
    code = "import sys, taas; print(sorted({'httpx', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    from taas import client, errors, model

    for name in set(taas.__all__) - {"__version__"}:
        value = getattr(taas, name)
        assert value in (getattr(module, name, None) for module in (client, errors, model))


def test_a_fresh_interpreter_sees_the_public_names_and_the_version() -> None:
    """Tab completion lists what dir() gives: the lazily imported names must be in it."""
    code = "import taas; print(sorted(set(dir(taas)) & {'Client', 'load_model'}), taas.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, version = done.stdout.strip().rsplit(" ", 1)
    assert names == "['Client', 'load_model']"
    assert version == importlib.metadata.version("taas")
