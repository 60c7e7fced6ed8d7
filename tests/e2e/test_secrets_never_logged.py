"""No API key or secret anywhere a bot writes, at DEBUG, with library loggers on, under errors.

Real parts only: the simulator process (signed order API, Binance's -1022 bad signature and -2015
unknown key answers), a real redis-server, real `tradefleet bot` processes at `log_level=DEBUG` in
testnet mode (the signed client logs every request's query at DEBUG; library loggers at DEBUG too).
Three bots: one with a good key that trades through 5xx, -1007, 429 and rejects; one with the right
key but a wrong secret (signature errors); one with an unknown key (401). Then every log line,
`/status`, `/metrics`, every row of every SQLite store and every Redis key and value is searched
for the key and the secret, and for any request signature.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisServer, free_port
from tests.e2e.test_replicas import Sim, http_json, wait
from tests.obs.botproc import bot_env, sim_urls, start_bot, stop_process

pytestmark = pytest.mark.slow

SIGNATURE_RE = re.compile(r"signature=[0-9a-fA-F]{64}")


def post_json(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, method="POST", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


class Bot:
    def __init__(self, name: str, tmp: Path, sim: Sim, redis_url: str, key: str, secret: str) -> None:
        self.http_port = free_port()
        self.db = tmp / f"{name}.sqlite"
        self.log_path = tmp / f"{name}.log"
        config = {
            "name": name, "mode": "testnet", "log_level": "DEBUG", "interval": "1m", "short_window": 2,
            "long_window": 5, **sim_urls(sim.port), "store_url": f"sqlite:///{self.db}",
            "http_port": self.http_port, "http_host": "127.0.0.1", "depth_limit": 100,
        }  # fmt: skip
        env = bot_env(config, REDIS_URL=redis_url, TRADEFLEET_API_KEY=key, TRADEFLEET_API_SECRET=secret)
        self.proc = start_bot(env, self.log_path)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        stop_process(self.proc)


def every_redis_value(url: str) -> str:
    r = redis.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    for key in r.scan_iter("*"):
        parts.append(key)
        kind = r.type(key)
        if kind == "string":
            parts.append(str(r.get(key)))
        elif kind == "hash":
            parts.append(json.dumps(r.hgetall(key)))
        elif kind == "stream":
            parts.append(json.dumps(r.xrange(key)))
        elif kind == "list":
            parts.append(json.dumps(r.lrange(key, 0, -1)))
        elif kind in ("set", "zset"):
            parts.append(json.dumps(sorted(r.smembers(key) if kind == "set" else r.zrange(key, 0, -1))))
        else:
            raise AssertionError(f"unexpected Redis type {kind} for {key}")
    return "\n".join(parts)


def every_stored_row(db: Path) -> str:
    if not db.exists():
        return ""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def test_api_key_and_secret_never_reach_a_log_line_status_metrics_store_or_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    key, secret = "LEAKCANARYKEY" + secrets.token_hex(24), "LEAKCANARYSECRET" + secrets.token_hex(24)
    wrong_secret, unknown_key = "WRONGSECRET" + secrets.token_hex(24), "UNKNOWNKEY" + secrets.token_hex(24)
    sim = Sim(tmp_path)
    bots: list[Bot] = []
    try:
        post_json(
            sim.url + "/sim/accounts", {"api_key": key, "secret": secret, "balances": {"USDT": "100000"}}
        )
        good = Bot("leak-good", tmp_path, sim, redis_server.url, key, secret)
        bad_sig = Bot("leak-badsig", tmp_path, sim, redis_server.url, key, wrong_secret)
        bad_key = Bot("leak-badkey", tmp_path, sim, redis_server.url, unknown_key, secret)
        bots = [good, bad_sig, bad_key]

        def seen() -> int:
            return sum(http_json(sim.url + "/sim/orders")["client_ids_seen"].values())

        wait(lambda: seen() >= 1, 120, "the good bot's first order")
        # Errors on every path a signed request takes: 5xx on any REST call, then on orders.
        post_json(sim.url + "/sim/faults", {"kind": "fail_rest", "status": 503, "count": 3})
        post_json(sim.url + "/sim/orders/faults", {"server_error": 1, "rate_limit": 1, "retry_after_s": 1})
        before = seen()
        wait(lambda: seen() >= before + 3, 120, "orders through the faults")
        wait(lambda: "-1022" in bad_sig.text(), 60, "the bad-signature bot to be refused")
        wait(lambda: "-2015" in bad_key.text(), 60, "the unknown-key bot to be refused")
        outputs = [good.get("/status"), good.get("/metrics"), good.get("/readyz")]
    finally:
        for b in bots:
            b.stop()
        sim.stop()

    logs = {b.log_path.name: b.text() for b in bots}
    # The signed client's own DEBUG line for every request (its query, not its signature) was written.
    assert any('"event":"signed_request"' in text for text in logs.values()), "DEBUG logging was not on"
    places = {
        **logs,
        "http": "\n".join(outputs),
        "redis": every_redis_value(redis_server.url),
        **{b.db.name: every_stored_row(b.db) for b in bots},
    }
    for where, text in places.items():
        for what, value in (("API key", key), ("API secret", secret), ("random part of the secret", secret[16:]),
                            ("wrong secret", wrong_secret), ("unknown key", unknown_key)):  # fmt: skip
            assert value not in text, f"the {what} appears in {where}"
        assert not SIGNATURE_RE.search(text), f"a request signature appears in {where}"
    assert "LEAKCANARY" not in places["redis"] + places["http"]
