"""The alert rules in dashboards/alerts.yml are valid and fire when, and only when, they should
(`promtool test rules` on tests/obs/alerts_test.yml), and name only metrics a bot exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tradefleet.metrics import BotMetrics
from tradefleet.web.process_metrics import install_process_metrics

HERE = Path(__file__).parent
RULES = HERE.parents[1] / "dashboards" / "alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed (apt-get install prometheus); .ci/run installs it")
    return subprocess.run([binary, *args], check=False, capture_output=True, text=True, timeout=120, cwd=HERE)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_fire_as_the_unit_tests_expect() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_name_only_exposed_metrics(metrics: BotMetrics) -> None:
    install_process_metrics(metrics.registry)
    exposed = {m.name for m in metrics.registry.collect()}
    exposed |= {s.name for m in metrics.registry.collect() for s in m.samples}
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    names = {n for e in exprs for n in re.findall(r"\b(tradefleet_[a-z0-9_]+)", e)}
    missing = {
        n for n in names if n not in exposed and re.sub(r"_(bucket|sum|count|total)$", "", n) not in exposed
    }
    assert not missing, sorted(missing)
