"""docker-compose.yml and the Dockerfile run commands the CLI accepts, with settings that exist.

No Docker engine is needed: the files are parsed and checked against the CLI and Settings, and
the proxy's nginx configuration against the compose file."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from taas.app.cli.main import cli
from taas.app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
NGINX_CONF = ROOT / "deploy" / "nginx" / "taas.conf"
# The API replicas: every service that runs `taas api`.
API_SERVICES = tuple(
    sorted(
        name
        for name, definition in COMPOSE["services"].items()
        if definition.get("command", [None])[0] == "api"
    )
)
TAAS_SERVICES = ("migrate", *API_SERVICES, "worker")
# Not TAAS_ settings: the standard AWS configuration, read by boto3 itself (AWS_REGION is the
# name other AWS SDKs and tools read; boto3 reads AWS_DEFAULT_REGION) ...
AWS_NAMES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
}
# ... and, on the API replicas, uvicorn's own: whose X-Forwarded-* headers it trusts.
UVICORN_NAMES = {"FORWARDED_ALLOW_IPS"}
# What the tests put in the shell's environment for `docker compose up`.
SHELL = {"TAAS_WORKER_TOKEN": "t" * 40, "MINIO_ROOT_PASSWORD": "m" * 40}


class UnknownCommand(Exception):
    pass


def parse(arguments: list[str]) -> Any:
    """Parse like `taas ARGS` would (typer's own click context); raises on an unknown command,
    option or bad value. A command group (`keys`, ...) parses its subcommand in turn."""
    group: Any = typer.main.get_command(cli)
    while True:
        command = group.commands.get(arguments[0])
        if command is None:
            raise UnknownCommand(arguments[0])
        if not hasattr(command, "commands"):  # not a group (typer ships its own click)
            return command.make_context(arguments[0], list(arguments[1:]))
        group, arguments = command, arguments[1:]


def service(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = COMPOSE["services"][name]
    return definition


def interpolate(value: str, shell: dict[str, str] = SHELL) -> str:
    """What Compose makes of ${VAR}, ${VAR:-default} and ${VAR:?error} given `shell`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match[1], match[2], match[3]
        if shell.get(name):
            return shell[name]
        if operator == ":?":
            raise KeyError(f"{name}: {word}")
        return word or ""

    return re.sub(r"(?<!\$)\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)


def environment(name: str) -> dict[str, Any]:
    return {key: interpolate(str(value)) for key, value in service(name)["environment"].items()}


def api_port() -> int:
    ports = {parse(service(name)["command"]).params["port"] for name in API_SERVICES}
    (port,) = ports  # every replica listens on the same port
    return int(port)


def nginx(text: str) -> list[Any]:
    """An nginx configuration as nested lists: [name, args] for a directive, [name, args,
    children] for a block. Enough for the file under deploy/nginx (no quotes with spaces)."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    stack: list[list[Any]] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append([words[0], words[1:]])
            words = []
        elif token == "{":
            block: list[Any] = [words[0], words[1:], []]
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            assert not words, f"directive without ';' before '}}': {words}"
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1, "unbalanced braces"
    assert not words, f"directive without ';' at the end: {words}"
    return stack[0]


def directives(block: list[Any], name: str) -> list[list[str]]:
    return [entry[1] for entry in block if entry[0] == name]


def only(block: list[Any], name: str) -> list[str]:
    (arguments,) = directives(block, name)
    return arguments


def blocks(block: list[Any], name: str) -> list[list[Any]]:
    return [entry for entry in block if entry[0] == name and len(entry) == 3]


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    unit = value[-1].lower()
    return int(value[:-1]) * units[unit] if unit in units else int(value)


def nginx_seconds(value: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(value[:-1]) * units[value[-1]] if value[-1] in units else float(value)


def test_there_are_several_api_replicas() -> None:
    assert len(API_SERVICES) >= 2
    assert "api" not in COMPOSE["services"]  # gone: `exec api` would find nothing


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
    with pytest.raises(UnknownCommand):
        parse(["keys", "mint", "--tenant", "x"])
    with pytest.raises(Exception, match="No such option: --team"):
        parse(["keys", "create", "--team", "x"])


def test_the_header_commands_run_in_services_that_exist() -> None:
    """The comment at the top says how to create a key: in a service of this file, with
    arguments the CLI takes."""
    header = COMPOSE_TEXT.split("\nx-", 1)[0]
    commands = re.findall(r"docker compose exec (\S+) taas ([^\n]+)", header)
    assert commands
    for name, arguments in commands:
        assert name in API_SERVICES
        parse(shlex.split(arguments))


@pytest.mark.parametrize("name", TAAS_SERVICES)
def test_compose_environment_names_only_real_settings(name: str) -> None:
    known = {f"TAAS_{field.upper()}" for field in Settings.model_fields}
    names = set(service(name)["environment"])
    taas_names = {key for key in names if key.startswith("TAAS_")}
    assert sorted(taas_names - known) == []
    allowed = AWS_NAMES | (UVICORN_NAMES if name in API_SERVICES else set())
    assert sorted(names - taas_names - allowed) == []


def test_the_aws_names_are_the_ones_boto3_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Whatever boto3 is given in the environment reaches the client: endpoint, region and
    credentials are MinIO's."""
    botocore_session = pytest.importorskip("botocore.session")
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    env = environment(API_SERVICES[0])
    for key in AWS_NAMES:
        monkeypatch.setenv(key, env[key])
    session = botocore_session.Session()
    client = session.create_client("s3")
    assert client.meta.endpoint_url == env["AWS_ENDPOINT_URL"]
    assert client.meta.region_name == env["AWS_DEFAULT_REGION"] == env["AWS_REGION"]
    credentials = session.get_credentials()
    assert credentials.access_key == env["AWS_ACCESS_KEY_ID"]
    assert credentials.secret_key == env["AWS_SECRET_ACCESS_KEY"]


def test_compose_environment_passes_production_checks() -> None:
    for name in API_SERVICES:
        settings = Settings(
            **{
                key.removeprefix("TAAS_").lower(): value
                for key, value in environment(name).items()
                if key.startswith("TAAS_")
            }
        )
        assert settings.environment == "production"
        settings.check_production_safety()
        assert settings.resolved_database_url.startswith("postgresql+psycopg://")
        assert settings.resolved_broker_url.startswith("redis://")
        assert settings.storage_url == "s3://taas/store"
        # Downloads go through the API: AWS_ENDPOINT_URL is a name inside the compose network,
        # which a user's redirected download could not reach.
        assert settings.storage_downloads == "proxy"
    with pytest.raises(KeyError, match="MINIO_ROOT_PASSWORD"):
        interpolate(service(API_SERVICES[0])["environment"]["AWS_SECRET_ACCESS_KEY"], {})


def test_objects_live_in_minio_and_its_bucket_exists_before_the_api_starts() -> None:
    minio, init = service("minio"), service("minio-init")
    assert minio["command"][:2] == ["server", "/data"]
    assert any(volume.endswith(":/data") for volume in minio["volumes"])
    assert "ready" in minio["healthcheck"]["test"] or any(
        "/minio/health/live" in part for part in minio["healthcheck"]["test"]
    )
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    root = {key: interpolate(value) for key, value in minio["environment"].items()}
    assert {key: interpolate(value) for key, value in init["environment"].items()} == root
    for name in TAAS_SERVICES:
        env = environment(name)
        # The taas services sign with MinIO's credentials, at MinIO's S3 port in this network.
        assert env["AWS_ACCESS_KEY_ID"] == root["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == root["MINIO_ROOT_PASSWORD"]
        endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
        assert (endpoint.hostname, endpoint.port) == ("minio", 9000)
        bucket = urlsplit(env["TAAS_STORAGE_URL"])
        assert bucket.scheme == "s3"
        # minio-init makes the bucket that TAAS_STORAGE_URL names.
        assert f"mc mb --ignore-existing local/{bucket.netloc}" in init["command"][0]
        # The filesystem locations of a single host are gone: no shared folder holds objects.
        assert "TAAS_ARTIFACT_DIR" not in env
        assert "TAAS_DATASET_DIR" not in env
    for name in API_SERVICES:
        condition = service(name)["depends_on"]["minio-init"]["condition"]
        assert condition == "service_completed_successfully"


def test_no_volume_is_shared_between_services() -> None:
    """The production shape spans hosts: an API replica keeps nothing on a volume (another
    replica could not read it), and no named volume is mounted by two services."""
    for name in API_SERVICES:
        assert "volumes" not in service(name)
        assert "ports" not in service(name)  # reached through the proxy only
    owners: dict[str, list[str]] = {}
    for name, definition in COMPOSE["services"].items():
        for volume in definition.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):  # a named volume, not a file of this repo
                owners.setdefault(source, []).append(name)
    assert set(owners) == set(COMPOSE["volumes"])
    assert {volume: names for volume, names in owners.items() if len(names) > 1} == {}


def test_the_proxy_balances_over_every_api_service() -> None:
    proxy = service("proxy")
    assert proxy["image"].startswith("nginx:")
    mount = f"./deploy/nginx/{NGINX_CONF.name}:/etc/nginx/conf.d/default.conf:ro"
    assert mount in proxy["volumes"]
    config = nginx(NGINX_CONF.read_text())
    (upstream,) = blocks(config, "upstream")
    servers = [arguments[0] for arguments in directives(upstream[2], "server")]
    assert sorted(servers) == [f"{name}:{api_port()}" for name in API_SERVICES]
    # Round-robin: no other balancing method in the group.
    assert not {"ip_hash", "hash", "least_conn", "random"} & {entry[0] for entry in upstream[2]}
    (server,) = blocks(config, "server")
    (listen,) = only(server[2], "listen")
    assert proxy["ports"] == [f"{listen}:{listen}"]
    (location,) = blocks(server[2], "location")
    assert location[1] == ["/"]
    assert only(location[2], "proxy_pass") == [f"http://{upstream[1][0]}"]
    headers = {
        arguments[0]: arguments[1] for arguments in directives(location[2], "proxy_set_header")
    }
    assert headers["Host"] == "$http_host"
    assert headers["X-Forwarded-For"] == "$remote_addr"
    # Server-Sent Events go out as they come, on connections that stay open.
    assert only(server[2], "proxy_buffering") == ["off"]
    assert nginx_seconds(only(server[2], "proxy_read_timeout")[0]) >= 300
    assert only(location[2], "proxy_http_version") == ["1.1"]
    # A dataset upload of the largest size the API takes gets through to the API.
    (max_body,) = only(server[2], "client_max_body_size")
    assert nginx_size(max_body) > Settings().max_upload_bytes
    for name in API_SERVICES:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"


def test_api_replicas_trust_the_forwarded_headers_of_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    for name in API_SERVICES:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", environment(name)["FORWARDED_ALLOW_IPS"])
        config = uvicorn.Config("taas.app.main:create_app", factory=True)
        assert config.proxy_headers
        assert config.forwarded_allow_ips == "*"


def test_worker_reaches_the_api_through_the_proxy_and_owns_a_gpu() -> None:
    config = nginx(NGINX_CONF.read_text())
    (server,) = blocks(config, "server")
    (listen,) = only(server[2], "listen")
    assert environment("worker")["TAAS_API_URL"] == f"http://proxy:{listen}"
    assert service("worker")["depends_on"]["proxy"]["condition"] == "service_healthy"
    queues = parse(service("worker")["command"]).params["queues"].split(",")
    assert "gpu" in queues
    devices = service("worker")["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_migrations_run_before_the_api_starts() -> None:
    for name in API_SERVICES:
        condition = service(name)["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
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


def test_prometheus_scrapes_every_api_replica_with_the_token_when_set() -> None:
    scrape_config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = scrape_config["scrape_configs"]
    targets = job["static_configs"][0]["targets"]
    assert sorted(targets) == [f"{name}:{api_port()}" for name in API_SERVICES]
    assert job["metrics_path"] == "/metrics"
    prometheus = service("prometheus")
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    token_file = job["authorization"]["credentials_file"]
    assert token_file in prometheus["command"][0]
    assert prometheus["environment"]["TAAS_METRICS_TOKEN"] == "${TAAS_METRICS_TOKEN:-}"
    for name in API_SERVICES:
        assert service(name)["environment"]["TAAS_METRICS_TOKEN"] == "${TAAS_METRICS_TOKEN:-}"
        assert prometheus["depends_on"][name]["condition"] == "service_healthy"


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
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    asked = {name for expr in expressions for name in re.findall(r"taas_[a-z_]+", expr)}
    assert len(dashboard["panels"]) >= 5
    assert asked <= exported, asked - exported
    # Every API replica reports the jobs it reads from the database: the same numbers, once
    # per replica. Take the max over replicas, never their sum.
    for expr in expressions:
        if re.search(r"taas_jobs\{", expr):
            assert re.search(r"max by \([^)]*\) \(taas_jobs\{", expr), expr
