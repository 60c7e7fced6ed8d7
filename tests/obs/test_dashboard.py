"""The Grafana dashboard asks only for metrics a bot really exposes, in PromQL Prometheus accepts.

Every query in `dashboards/tradefleet.json` is checked three ways: each metric name it references is
in a real scrape of a bot's endpoint, each `label="value"` it filters on exists there, and the query
itself runs on a real Prometheus that scrapes that endpoint (and returns data where data exists).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.obs.conftest import Prometheus
from tradefleet.metrics import BotMetrics
from tradefleet.web.http import BotHttpServer

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "tradefleet.json"
METRIC_RE = re.compile(r"\b((?:tradefleet|process|python)_[a-zA-Z0-9_]+)(\{[^}]*\})?")
MATCHER_RE = re.compile(r'(\w+)="([^"]*)"')


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    """Grafana's variables replaced the way Grafana would, for a direct Prometheus query."""
    return expr.replace("$__rate_interval", "1m").replace("$bot", ".*")


def test_dashboard_is_well_formed_for_provisioning() -> None:
    d = dashboard()
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "bot"} <= names
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for must in ("price", "latency", "loss", "error", "cpu", "memory", "leader"):
        assert must in titles


def scrape_families(text: str) -> tuple[set[str], set[str], list[tuple[str, dict[str, str]]]]:
    """(family names with their type lines' names, histogram families, samples with labels)."""
    families, histograms, samples = set(), set(), []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            families.add(name)
            if kind == "histogram":
                histograms.add(name)
        elif line and not line.startswith("#"):
            name, _, rest = line.partition("{")
            labels = dict(MATCHER_RE.findall(rest.partition("}")[0])) if rest else {}
            samples.append((name.split(" ")[0], labels))
    return families, histograms, samples


def exercise(metrics: BotMetrics) -> None:
    """Touch the labelled series a running bot creates on its first event of each kind."""
    metrics.sma.labels("50").set(1.0)
    metrics.sma.labels("200").set(1.0)
    metrics.last_price.set(1.0)
    metrics.reconnects.labels("stale").inc()
    metrics.rest_errors.labels("rate_limited").inc()
    metrics.store_failures.labels("price").inc()
    metrics.events_buffered.labels("signals").set(0)
    metrics.leader.set(1)
    metrics.latency.labels("parse").observe(0.00002)


async def test_every_dashboard_metric_and_label_exists_in_a_real_scrape(
    endpoint: BotHttpServer, metrics: BotMetrics, http: aiohttp.ClientSession
) -> None:
    exercise(metrics)
    async with http.get(f"{endpoint.url}/metrics") as r:
        families, histograms, samples = scrape_families(await r.text())
    sample_names = {name for name, _ in samples}
    missing, bad_labels = set(), set()
    for expr in queries():
        for name, matchers in METRIC_RE.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in sample_names and name not in families and base not in histograms:
                missing.add(name)
            for label, value in MATCHER_RE.findall(matchers):
                if not any(n == name and labels.get(label) == value for n, labels in samples):
                    bad_labels.add(f'{name}{{{label}="{value}"}}')
    assert not missing, f"dashboard references metrics the bot does not expose: {sorted(missing)}"
    assert not bad_labels, f"dashboard filters on label values that never appear: {sorted(bad_labels)}"


@pytest.mark.slow  # a Prometheus server process
async def test_every_dashboard_query_runs_on_real_prometheus(
    endpoint: BotHttpServer, metrics: BotMetrics, prometheus: Prometheus, http: aiohttp.ClientSession
) -> None:
    exercise(metrics)
    prometheus.start([f"127.0.0.1:{endpoint.port}"])
    await prometheus.wait_ready(http)
    # Two scrapes at least, so rate()/increase() have something to work with.
    await prometheus.wait_for(http, "count_over_time(up[1m]) >= 3")
    empty = []
    for expr in queries():
        result = await prometheus.query(http, concrete(expr))  # raises unless Prometheus parsed it
        if not result and "> 0" not in expr:  # signal markers are empty until a signal fires
            empty.append(expr)
    assert not empty, "queries with no data although the bot exposes them:\n" + "\n".join(empty)
    async with http.get(f"{prometheus.url}/api/v1/label/bot/values") as r:
        assert (await r.json())["data"] == ["btc-usdt"]  # what the $bot variable offers


def test_every_query_is_filtered_by_the_bot_variable() -> None:
    unfiltered = [e for e in queries() if 'tradefleet_bot_info{bot=~"$bot"}' not in e]
    assert not unfiltered, unfiltered
