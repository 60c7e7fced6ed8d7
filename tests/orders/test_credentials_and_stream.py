"""API credentials stay secret; the WebSocket API user data stream speaks Binance's shapes."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest
import websockets

from tradefleet.adapters.credentials import Credentials, load_credentials
from tradefleet.adapters.userdata import parse_execution_report, subscribe_request
from tradefleet.domain.models import OrderStatus
from tradefleet.errors import ConfigError
from tradefleet.logs import JsonFormatter, SecretScrubber, log_event, setup_logging
from tradefleet.logs import now_ms as wall_ms
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

DATA = Path(__file__).parent / "data"


def test_secret_never_in_repr_str_or_logs(caplog):
    c = Credentials(api_key="AKIAEXAMPLEKEY123", secret="s3cr3t-value-xyz")
    assert "s3cr3t" not in repr(c) and "s3cr3t" not in str(c) and "EXAMPLEKEY" not in repr(c)
    caplog.set_level(logging.INFO)
    log_event(logging.getLogger("t"), "creds", credentials=c)
    line = JsonFormatter().format(caplog.records[-1])
    assert "s3cr3t" not in line and "EXAMPLEKEY" not in line


@pytest.mark.parametrize("json_lines", [True, False])
def test_registered_credentials_are_scrubbed_from_every_logger_message_args_extras_and_tracebacks(json_lines):
    import io

    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("DEBUG", json_lines=json_lines, stream=out)
        c = load_credentials(
            {"TRADEFLEET_API_KEY": "KEYCANARY-123456", "TRADEFLEET_API_SECRET": "SECCANARY-654321"}
        )
        assert c is not None
        sig = "ab" * 32
        # ccxt's own DEBUG line for a signed request: headers as args, the signature in the URL.
        logging.getLogger("ccxt.base.exchange").debug(
            "%s %s, Request: %s %s", "POST", f"http://x/api/v3/order?timestamp=1&signature={sig}",
            {"X-MBX-APIKEY": c.api_key}, None,
        )  # fmt: skip
        logging.getLogger("urllib3.connectionpool").warning("X-MBX-APIKEY: %s", "UNREGISTERED-KEY-VALUE")
        log_event(logging.getLogger("tradefleet.t"), "boom", logging.ERROR, detail=f"secret={c.secret}")
        try:
            raise RuntimeError(f"request failed with key {c.api_key} and secret {c.secret}")
        except RuntimeError:
            logging.getLogger("aiohttp.client").exception("failed %s", c.secret)
        logging.getLogger("x").info("%d%%", 5)  # ordinary formatting still works
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    text = out.getvalue()
    for value in ("KEYCANARY-123456", "SECCANARY-654321", sig, "UNREGISTERED-KEY-VALUE"):
        assert value not in text
    assert text.count("***") >= 6 and "5%" in text


def test_scrubber_ignores_values_too_short_to_be_credentials():
    s = SecretScrubber(["abc"])
    assert s.scrub("abc def") == "abc def"


def test_credentials_from_mounted_files_and_env(tmp_path):
    (tmp_path / "k").write_text("key-from-file\n")
    (tmp_path / "s").write_text("secret-from-file\n")
    c = load_credentials({"TRADEFLEET_API_KEY_FILE": str(tmp_path / "k"),
                          "TRADEFLEET_API_SECRET_FILE": str(tmp_path / "s")})  # fmt: skip
    assert c == Credentials("key-from-file", "secret-from-file")
    assert load_credentials(
        {"TRADEFLEET_API_KEY": "key-from-env", "TRADEFLEET_API_SECRET": "secret-from-env"}
    ) == Credentials("key-from-env", "secret-from-env")
    assert load_credentials({}) is None


def test_a_value_too_short_or_with_spaces_to_be_a_credential_is_refused():
    # Too short to be scrubbed from logs by value, or mangled (a space) by the secret store.
    for key, secret in (("k", "secret-value"), ("key-value", "s"), ("key value", "secret-value")):
        with pytest.raises(ConfigError, match="not an API credential"):
            load_credentials({"TRADEFLEET_API_KEY": key, "TRADEFLEET_API_SECRET": secret})


@pytest.mark.parametrize(
    "env",
    [
        {"TRADEFLEET_API_KEY": "KEYVALUE1"},
        {
            "TRADEFLEET_API_KEY": "KEYVALUE1",
            "TRADEFLEET_API_KEY_FILE": "/x",
            "TRADEFLEET_API_SECRET": "SECRETVALUE1",
        },
        {"TRADEFLEET_API_KEY_FILE": "/nonexistent/key", "TRADEFLEET_API_SECRET": "SECRETVALUE1"},
    ],
    ids=["half", "two_sources", "missing_file"],
)
def test_bad_credential_setups_fail_loudly_without_echoing_values(env):
    with pytest.raises(ConfigError) as e:
        load_credentials(env)
    assert str(e.value) != "k" and "s3" not in str(e.value)


def test_exchange_mode_without_credentials_is_refused():
    with pytest.raises(ConfigError, match="credentials"):
        load_credentials({}, required=True)


def test_parses_real_execution_reports_wrapped_as_websocket_api_events():
    frames = json.loads((DATA / "ws_userdata_listenKey_BTCUSDT_2021-03-24_gct.json").read_text())
    reports = [f["data"] for f in frames if f["data"]["e"] == "executionReport"]
    # Today the same bodies arrive as {"subscriptionId": N, "event": {...}}.
    wrapped = [{"subscriptionId": 0, "event": r} for r in reports]
    new, fill = (parse_execution_report(w["event"]) for w in wrapped)
    assert (new.status, new.exec_type, new.filled_qty, new.trade_id) == (OrderStatus.NEW, "NEW", 0, None)
    assert fill.status is OrderStatus.FILLED and fill.exec_type == "TRADE"
    assert fill.filled_qty == Decimal("0.00028600") and fill.cum_quote == Decimal("14.99693910")
    assert (fill.fee, fill.fee_asset, fill.trade_id) == (Decimal("0.00000029"), "BTC", 726946523)
    assert fill.exchange_order_id == "5341783271" and fill.client_order_id == "YeULctvPAnHj5HXCQo9Mob"


async def test_user_stream_subscription_needs_a_valid_signature(sim):
    url = f"{sim.ws_url}/ws-api/v3"
    good = subscribe_request(Credentials(DEFAULT_API_KEY, DEFAULT_API_SECRET), "a", wall_ms())
    bad = subscribe_request(Credentials(DEFAULT_API_KEY, "wrong"), "b", wall_ms())
    stale = subscribe_request(Credentials(DEFAULT_API_KEY, DEFAULT_API_SECRET), "c", wall_ms() - 120_000)
    async with websockets.connect(url) as ws:
        answers = {}
        for req in (bad, stale, good):
            await ws.send(json.dumps(req))
            msg = json.loads(await ws.recv())
            answers[msg["id"]] = msg
    assert answers["b"]["status"] == 400 and answers["b"]["error"]["code"] == -1022
    assert answers["c"]["error"]["code"] == -1021
    assert answers["a"]["status"] == 200 and isinstance(answers["a"]["result"]["subscriptionId"], int)


async def test_user_stream_reconnects_after_a_drop_and_reports_fills_again(
    sim, store, lease, run_manager, metrics
):
    from tests.orders.conftest import (
        bot_config,
        exchange_execution,
        make_signal,
        sim_rules,
        sim_trading_fault,
        until,
    )
    from tradefleet.domain.ids import client_order_id
    from tradefleet.domain.models import Side

    config = bot_config(sim)
    execution = exchange_execution(config)
    m = await run_manager(config=config, store=store, execution=execution, lease=lease, rules=sim_rules(sim),
                          metrics=metrics)  # fmt: skip
    await until(lambda: execution.stream.connected.is_set(), what="subscribed")
    first_sub = execution.stream.subscription_id
    await sim_trading_fault(sim, drop_user_streams=True)
    await until(lambda: execution.stream.reconnects >= 1 and execution.stream.connected.is_set(),
                what="re-subscribed after the drop")  # fmt: skip
    assert execution.stream.subscription_id != first_sub
    signal = make_signal(config, Side.BUY, 1)
    m.submit_signal(signal)
    cid = client_order_id(signal.signal_id)

    async def from_stream() -> bool:
        # The TRADE itself is usually stored first from the FULL response's fills (same trade id, stored
        # once); the NEW report only ever comes over the stream.
        return any(u.source == "stream" for u in await store.order_updates(cid))

    await until(from_stream, what="an executionReport over the new subscription")
