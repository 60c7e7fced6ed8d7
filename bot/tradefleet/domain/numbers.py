"""What a number from outside must look like before any state sees it (pure; the parsers call it).

Why it exists: one `NaN` close made every later candle raise inside the strategy; a close of `1e30`
overflowed the running SMA sums' precision and bent the averages for good; zero and negative closes
reached signals; non-ASCII digits were read as numbers. Every price, quantity and volume the
exchange sends (websocket depth, ticker, trade, kline; REST depth and klines) is a decimal string,
and it is accepted only in the exchange's own plain notation:

- ASCII digits with at most one dot: no sign, no exponent, no `NaN`/`Infinity`, no spaces, no
  underscores, no Unicode digits (`Decimal()` would read `"١"` and `"1_0"`);
- at most `MAX_CHARS` characters, `MAX_WHOLE` integer digits (leading zeros aside) and
  `MAX_DECIMALS` decimals (trailing zeros aside): every accepted value is exact in a 128-bit
  integer of units of 10^-18 (the native book's key), and a sum of `MAX_TERMS` of them stays exact
  in `SUM_CONTEXT`;
- prices strictly positive; quantities and volumes zero or positive.

Anything else raises `MalformedNumber` with the field and the reason; the caller counts it as a
malformed frame and skips the whole message, so no part of it changes state. The order book's hot
path applies the same rules with its own inlined checks (`orderbook.level_key` and `_Side.apply`).

What it refuses to do: round, clamp or "repair" a value. A number that is not exactly what the
exchange meant is not used at all.
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from tradefleet.errors import MalformedFrame

MAX_WHOLE = 20
"""Integer digits a price or quantity may have: no market quotes 10^20, no order book holds it."""
MAX_DECIMALS = 18
"""Decimals a price or quantity may have (the order book keys prices in units of 10^-18)."""
MAX_CHARS = 64
"""Longest number string read at all, leading and trailing zeros included (the book's limit too)."""
MAX_TERMS = 100_000
SUM_CONTEXT = Context(prec=MAX_WHOLE + MAX_DECIMALS + 8, traps=[Inexact, InvalidOperation, Overflow])
"""Exact for any sum of up to MAX_TERMS accepted values; anything inexact raises instead of drifting."""


class MalformedNumber(MalformedFrame):
    """A number from outside that is not a plain, bounded decimal in the exchange's notation."""


def plain_decimal(text: object, field: str, *, positive: bool) -> Decimal:
    """`text` as an exact Decimal, or MalformedNumber naming `field` and what is wrong."""
    if type(text) is not str:
        raise MalformedNumber(f"{field} {text!r} is not a decimal string")
    if not text or not text.isascii() or len(text) > MAX_CHARS:
        raise MalformedNumber(f"{field} {text[:40]!r} is not a plain decimal number")
    whole, _, frac = text.partition(".")
    if not (whole or frac) or (whole and not whole.isdigit()) or (frac and not frac.isdigit()):
        raise MalformedNumber(f"{field} {text[:40]!r} is not a plain decimal number")
    if len(whole.lstrip("0")) > MAX_WHOLE:
        raise MalformedNumber(f"{field} {text[:40]!r} has more than {MAX_WHOLE} integer digits")
    if len(frac.rstrip("0")) > MAX_DECIMALS:
        raise MalformedNumber(f"{field} {text[:40]!r} has more than {MAX_DECIMALS} decimals")
    value = Decimal(text)
    if positive and not value:
        raise MalformedNumber(f"{field} {text!r} must be positive")
    return value


def price(text: object, field: str = "price") -> Decimal:
    return plain_decimal(text, field, positive=True)


def quantity(text: object, field: str = "quantity") -> Decimal:
    return plain_decimal(text, field, positive=False)


def check_candle(
    open_: Decimal, high: Decimal, low: Decimal, close: Decimal, open_time: int, close_time: int
) -> None:
    """A candle's own consistency: low <= open, close <= high, and it closes after it opens."""
    if not (low <= open_ <= high and low <= close <= high):
        raise MalformedNumber(f"candle prices out of order: o={open_} h={high} l={low} c={close}")
    if close_time <= open_time:
        raise MalformedNumber(f"candle closes ({close_time}) before it opens ({open_time})")
