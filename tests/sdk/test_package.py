"""`import taas` is what every process of the service does first: it must stay light."""

from __future__ import annotations

import subprocess
import sys

import taas


def test_importing_taas_loads_neither_the_http_client_nor_torch() -> None:
    code = "import sys, taas; print(sorted({'httpx', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    from taas import client, errors, model

    for name in taas.__all__:
        value = getattr(taas, name)
        assert value in (getattr(module, name, None) for module in (client, errors, model))
