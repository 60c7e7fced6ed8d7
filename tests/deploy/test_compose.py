"""docker-compose.yml without a Docker engine: the compose-spec JSON schema, and everything the file
names must exist here — Dockerfiles, mounted files, CLI subcommands and their options — with the
bots' real configuration accepted by the real `tradefleet bot --check-config`."""

from __future__ import annotations

import glob
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.obs.botproc import process_env
from tradefleet.app.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
BOTS = ("bot-1", "bot-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def compose_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose-spec schema shipped inside the docker-compose 1.29.2 wheel, fetched by pip
    (without its dependencies, never installed; pip's cache makes later runs local): the spec's
    schema itself is not downloadable here."""
    dest = tmp_path_factory.mktemp("compose-wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-d", str(dest), "docker-compose==1.29.2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    wheels = glob.glob(str(dest / "docker_compose-1.29.2-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.fail(f"cannot fetch docker-compose 1.29.2 for its compose_spec.json:\n{proc.stderr[-2000:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        schema: dict[str, Any] = json.loads(wheel.read("compose/config/compose_spec.json"))
    # The spec gained a top-level project `name` after that release (compose v2 reads it): allow
    # exactly that, as a string, and nothing else new.
    schema["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    return schema


def _errors(doc: Any, schema: dict[str, Any]) -> list[str]:
    # The file says draft 2019-09 (with a trailing "#" jsonschema does not recognise).
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` interpolation, enough for this file."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def _service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    return {k: _interpolate(str(v), env) for k, v in service.get("environment", {}).items()}


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_compose_file_matches_the_compose_spec_schema(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    assert _errors(compose, compose_schema) == []


def test_compose_schema_catches_typos_so_the_check_can_fail(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(compose))
    broken["services"]["redis"]["healthchek"] = broken["services"]["redis"].pop("healthcheck")
    broken["services"]["bot-1"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert len(_errors(broken, compose_schema)) >= 2


def test_services_are_mongodb_redis_two_bots_prometheus_grafana_and_a_sim_profile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"mongodb", "redis", *BOTS, "prometheus", "grafana", "sim"}
    assert services["sim"]["profiles"] == ["sim"]
    assert all("profiles" not in s for name, s in services.items() if name != "sim")


def test_every_service_has_a_healthcheck_and_bots_wait_for_healthy_stores(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for bot in BOTS:
        depends = services[bot]["depends_on"]
        assert depends == {
            "mongodb": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_builds_name_dockerfiles_and_mounted_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_commands_are_real_cli_subcommands_with_accepted_options(compose: dict[str, Any]) -> None:
    from tradefleet_sim.cli import build_parser

    for name, service in compose["services"].items():
        if service.get("image", "").startswith("tradefleet-bot"):
            command = service["command"]
            assert command[0] in COMMANDS, f"{name}: `tradefleet {command[0]}` does not exist"
    sim = compose["services"]["sim"]["command"]
    args = build_parser().parse_args(sim[1:])
    assert (args.host, args.port) == ("0.0.0.0", 8765)


def test_bot_containers_follow_the_image_contract(compose: dict[str, Any]) -> None:
    for bot in BOTS:
        service = compose["services"][bot]
        assert service["read_only"] is True and service["user"] == "10001:10001"
        assert service["tmpfs"] == ["/tmp"]
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert mounts == {"/etc/tradefleet/bot.yaml", "/data"}
        env = service["environment"]
        assert env["TRADEFLEET_CONFIG"] == "/etc/tradefleet/bot.yaml"
        assert env["POD_NAME"] == bot
    ports = {compose["services"][b]["ports"][0] for b in BOTS}
    assert ports == {"8081:8080", "8082:8080"}


@pytest.mark.parametrize("env_file", [None, "deploy/compose/sim.env"])
def test_bot_configuration_is_accepted_by_the_real_bot(compose: dict[str, Any], env_file: str | None) -> None:
    """`tradefleet bot --check-config` with the container's environment (interpolated as compose
    would) and its mounted config file: an unknown key or variable would make it refuse."""
    host_env = _env_file(ROOT / env_file) if env_file else {}
    for bot in BOTS:
        env = _service_env(compose["services"][bot], host_env)
        env["TRADEFLEET_CONFIG"] = str(ROOT / "deploy" / "compose" / "bot.yaml")
        proc = subprocess.run(
            [sys.executable, "-m", "tradefleet.app.cli", "bot", "--check-config"],
            env=process_env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert urlsplit(env["TRADEFLEET_STORE_URL"]).hostname == "mongodb"
        assert urlsplit(env["REDIS_URL"]).hostname == "redis"
        if env_file:
            assert urlsplit(env["TRADEFLEET_REST_URL"]).hostname == "sim"
            assert urlsplit(env["TRADEFLEET_WS_URL"]).port == 8765


def test_sim_env_file_enables_the_sim_profile(compose: dict[str, Any]) -> None:
    env = _env_file(ROOT / "deploy" / "compose" / "sim.env")
    assert env["COMPOSE_PROFILES"] == "sim"
    assert set(env) == {"COMPOSE_PROFILES", "EXCHANGE_REST_URL", "EXCHANGE_WS_URL"}
    for var in ("EXCHANGE_REST_URL", "EXCHANGE_WS_URL"):
        assert any(var in str(v) for v in compose["services"]["bot-1"]["environment"].values())


def test_store_and_redis_passwords_match_between_servers_and_bots(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for host_env in ({}, {"MONGO_ROOT_PASSWORD": "m0ngo-secret", "REDIS_PASSWORD": "r3dis-secret"}):
        mongo_password = _service_env(services["mongodb"], host_env)["MONGO_INITDB_ROOT_PASSWORD"]
        redis_password = _service_env(services["redis"], host_env)["REDISCLI_AUTH"]
        redis_command = [_interpolate(c, host_env) for c in services["redis"]["command"]]
        assert redis_command[redis_command.index("--requirepass") + 1] == redis_password
        for bot in BOTS:
            env = _service_env(services[bot], host_env)
            assert urlsplit(env["TRADEFLEET_STORE_URL"]).password == mongo_password
            assert urlsplit(env["REDIS_URL"]).password == redis_password


def test_prometheus_scrapes_every_bot_replica_and_its_config_is_valid(compose: dict[str, Any]) -> None:
    config_path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    (bots_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tradefleet-bots"]
    targets = {t for sc in bots_job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{b}:8080" for b in BOTS}
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing (apt-get install prometheus; .ci/run installs it)")
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_provisions_the_prometheus_datasource_and_the_repo_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    (prometheus,) = [d for d in datasources if d["type"] == "prometheus"]
    assert urlsplit(prometheus["url"]).hostname == "prometheus" and urlsplit(prometheus["url"]).port == 9090
    providers = yaml.safe_load((provisioning / "dashboards" / "tradefleet.yaml").read_text())["providers"]
    (provider,) = providers
    assert mounts["./dashboards"] == provider["options"]["path"]
    dashboard = json.loads((ROOT / "dashboards" / "tradefleet.json").read_text())
    assert dashboard["panels"], "the provisioned dashboard has panels"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/tradefleet.json"
