"""docker-compose.yml and the Dockerfile run commands the CLI accepts, with settings that exist.

No Docker engine is needed: the files are parsed and checked against the CLI and Settings."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from taas.app.cli.main import cli
from taas.app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TAAS_SERVICES = ("migrate", "api", "worker")


class UnknownCommand(Exception):
    pass


def parse(arguments: list[str]) -> Any:
    """Parse like `taas ARGS` would (typer's own click context); raises on an unknown command,
    option or bad value."""
    commands = typer.main.get_command(cli).commands  # type: ignore[attr-defined]
    command = commands.get(arguments[0])
    if command is None:
        raise UnknownCommand(arguments[0])
    return command.make_context(arguments[0], list(arguments[1:]))


def service(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = COMPOSE["services"][name]
    return definition


@pytest.mark.parametrize("name", TAAS_SERVICES)
def test_compose_commands_are_valid_cli_invocations(name: str) -> None:
    context = parse(service(name)["command"])
    assert context.command.name == service(name)["command"][0]


def test_parse_rejects_what_the_cli_rejects() -> None:
    with pytest.raises(Exception, match="No such option: --queue"):
        parse(["worker", "--queue", "gpu"])
    with pytest.raises(Exception, match="valid integer"):
        parse(["worker", "--concurrency", "abc"])
    with pytest.raises(UnknownCommand):
        parse(["serve-all"])


@pytest.mark.parametrize("name", TAAS_SERVICES)
def test_compose_environment_names_only_real_settings(name: str) -> None:
    known = {f"TAAS_{field.upper()}" for field in Settings.model_fields}
    environment = service(name)["environment"]
    unknown = sorted(set(environment) - known)
    assert unknown == []


def test_compose_environment_passes_production_checks() -> None:
    environment = {
        key: "x" * 40 if key == "TAAS_WORKER_TOKEN" else value
        for key, value in service("api")["environment"].items()
    }
    settings = Settings(
        **{key.removeprefix("TAAS_").lower(): value for key, value in environment.items()}
    )
    assert settings.environment == "production"
    settings.check_production_safety()
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.resolved_broker_url.startswith("redis://")


def test_worker_reaches_the_api_service_and_owns_a_gpu() -> None:
    api_port = parse(service("api")["command"]).params["port"]
    assert service("worker")["environment"]["TAAS_API_URL"] == f"http://api:{api_port}"
    queues = parse(service("worker")["command"]).params["queues"].split(",")
    assert "gpu" in queues
    devices = service("worker")["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_migrations_run_before_the_api_starts() -> None:
    assert service("api")["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert service("migrate")["command"] == ["migrate"]


def test_dockerfile_entrypoint_and_default_command_are_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)[1])  # type: ignore[index]
    command = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE)[1])  # type: ignore[index]
    assert entrypoint == ["taas"]
    assert parse(command).command.name == "api"
    assert "ARG TORCH_VARIANT" in dockerfile
    assert "pip install ." in dockerfile


def test_every_package_folder_ships_in_the_wheel_under_taas() -> None:
    """pyproject.toml lists the packages one by one, all under `taas`: a new folder missing
    there works in a checkout and fails in an installed wheel, and a package outside `taas`
    would shadow a user's own module of that name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {
        "taas." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("app", "worker")
        for init in (ROOT / top).rglob("__init__.py")
    }
    shipped |= {"taas", "taas.app.migrations", "taas.app.migrations.versions"}
    assert set(config["packages"]) == shipped
    assert all(package.split(".")[0] == "taas" for package in config["packages"])
    mapping = config["package-dir"]
    assert mapping == {
        "taas": "sdk/taas",
        "taas.app": "app",
        "taas.app.migrations": "migrations",
        "taas.worker": "worker",
    }


def test_prometheus_scrapes_the_api_service_with_the_token_when_set() -> None:
    scrape_config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = scrape_config["scrape_configs"]
    api_port = parse(service("api")["command"]).params["port"]
    assert job["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert job["metrics_path"] == "/metrics"
    prometheus = service("prometheus")
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    token_file = job["authorization"]["credentials_file"]
    assert token_file in prometheus["command"][0]
    assert prometheus["environment"]["TAAS_METRICS_TOKEN"] == "${TAAS_METRICS_TOKEN:-}"
    assert service("api")["environment"]["TAAS_METRICS_TOKEN"] == "${TAAS_METRICS_TOKEN:-}"


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    from prometheus_client import REGISTRY

    import taas.app.observability.metrics  # noqa: F401  (registers taas's metrics)

    exported = {"taas_jobs", "taas_database_up"} | {
        sample_name
        for family in REGISTRY.collect()
        if family.name.startswith("taas_")
        for sample_name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "taas.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"taas_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 5
    assert asked <= exported, asked - exported
