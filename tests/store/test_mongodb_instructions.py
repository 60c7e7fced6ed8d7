"""The instructions for running the store suite against compose's MongoDB name what compose runs:
the service, its published port (through the test override) and its credentials. They once said
`docker compose up -d mongo` (no such service) with a URL that had no credentials and no port."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

OVERRIDE = "tests/store/mongodb-port.yml"


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _instructions() -> dict[str, str]:
    return {
        "README.md": (ROOT / "README.md").read_text(),
        "tests/store/conftest.py": (ROOT / "tests/store/conftest.py").read_text(),
    }


def test_the_override_publishes_a_service_compose_has_on_loopback_only() -> None:
    compose = _yaml(ROOT / "docker-compose.yml")["services"]
    override = _yaml(ROOT / OVERRIDE)["services"]
    assert set(override) == {"mongodb"} <= set(compose)
    (port,) = override["mongodb"]["ports"]
    assert port.startswith("127.0.0.1:") and port.endswith(":27017")


def test_each_instruction_starts_that_service_and_uses_its_credentials() -> None:
    env = _yaml(ROOT / "docker-compose.yml")["services"]["mongodb"]["environment"]
    user = env["MONGO_INITDB_ROOT_USERNAME"]
    password = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", env["MONGO_INITDB_ROOT_PASSWORD"])
    assert password is not None, "the compose password is ${VAR:-default}"
    password_var, default = password.groups()
    for where, text in _instructions().items():
        assert f"docker compose -f docker-compose.yml -f {OVERRIDE} up -d mongodb" in text, where
        assert f"mongodb://{user}:${{{password_var}:-{default}}}@127.0.0.1:27017/?authSource=admin" in text, (
            where
        )
        assert "up -d mongo\n" not in text, where
