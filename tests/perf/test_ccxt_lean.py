"""`bench.ccxt_lean`: a process loads one ccxt exchange, not a hundred, and every
other ccxt name still resolves to the real thing. Each case runs in a fresh interpreter, because
this test process has imported ccxt the ordinary way already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any


def run(code: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_bot_edges_build_a_binance_client_without_loading_other_exchanges() -> None:
    result = run(
        """
        import json, sys
        from bench import ccxt_lean
        installed = ccxt_lean.install()
        import tradefleet.app.runtime, tradefleet.adapters.market_rest, tradefleet.adapters.binance_exec
        from bench.ccxt_client import make_binance
        client = make_binance(rest_url="http://127.0.0.1:9")  # what BinanceExecution builds
        import ccxt.async_support
        loaded = sorted(m for m in sys.modules if m.startswith("ccxt."))
        print(json.dumps({"installed": installed, "loaded": loaded,
                          "client": type(ccxt.async_support.binance({})).__module__}))
        """
    )
    assert result["installed"] is True
    assert result["client"] == "ccxt.async_support.binance"
    for other in ("ccxt.kraken", "ccxt.okx", "ccxt.async_support.okx", "ccxt.bybit", "ccxt.pro"):
        assert other not in result["loaded"]
    assert len(result["loaded"]) < 40  # base, errors, types, binance: not ~400 modules


def test_any_other_ccxt_name_loads_the_real_package_and_classes_are_the_same_objects() -> None:
    result = run(
        """
        import json
        from bench import ccxt_lean
        ccxt_lean.install()
        import ccxt, ccxt.async_support as ca
        from ccxt.base import errors
        same_errors = ca.NetworkError is ccxt.NetworkError is errors.NetworkError
        caught = False
        try:
            raise errors.RateLimitExceeded("x")
        except ccxt.NetworkError:
            caught = True
        print(json.dumps({
            "same_errors": same_errors, "caught": caught,
            "okx": ca.okx.__module__, "kraken": ccxt.kraken.__module__, "version": ccxt.__version__,
            "binance_still_class": isinstance(ca.binance, type), "exchanges": len(ccxt.exchanges),
        }))
        """
    )
    assert result["same_errors"] and result["caught"]
    assert result["okx"] == "ccxt.async_support.okx"
    assert result["kraken"] == "ccxt.kraken"
    assert result["version"]
    assert result["binance_still_class"]
    assert result["exchanges"] > 50


def test_after_an_ordinary_import_it_stands_aside() -> None:
    result = run(
        """
        import json
        import ccxt
        from bench import ccxt_lean
        print(json.dumps({"installed": ccxt_lean.install(), "kraken": ccxt.kraken.__module__}))
        """
    )
    assert result == {"installed": False, "kraken": "ccxt.kraken"}
