"""Client order ids derived from signals: the key that makes an order exactly-once.

The exchange de-duplicates nothing for us after an order is final (Binance only rejects a repeated
`newClientOrderId` while the first order is still open), so the id must be a pure function of the
signal. A retry, a restart or a second replica then computes the *same* id and can ask the exchange
"do you know this order?" before it ever sends anything.

Shape: `tf` + 32 lowercase hex digits of SHA-256(signal id, attempt) = 34 characters, inside
Binance's `^[a-zA-Z0-9-_]{1,36}$`. A hash (not the signal id itself) keeps the id short whatever the
bot name is, and the `tf` prefix tells our orders apart from manual ones on the same account.

This module refuses to generate random ids: nothing here may depend on time or chance.
"""

from __future__ import annotations

import hashlib
import re

BINANCE_CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
PREFIX = "tf"
_OURS_RE = re.compile(r"^tf[0-9a-f]{32}$")


def client_order_id(signal_id: str, attempt: int = 0) -> str:
    """The client order id for `attempt` of the order acting on `signal_id`.

    `attempt` stays 0 for every retry, re-send and restart of the same order: that is the point.
    A new attempt number is only for a deliberate *new* order for the same signal after the first one
    is final and filled nothing (the manager does not do this on its own today).
    """
    if not signal_id:
        raise ValueError("signal_id must not be empty")
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    digest = hashlib.sha256(f"{signal_id}\x1f{attempt}".encode()).hexdigest()
    return PREFIX + digest[:32]


def is_ours(client_id: str) -> bool:
    """True for ids this module generates (orders placed by a tradefleet bot)."""
    return bool(_OURS_RE.match(client_id))


def event_id(bot: str, kind: str, key: str) -> str:
    """The stored event's natural key: the same fact observed again (a replica, a restart) maps to the
    same id, so the store keeps one record."""
    if not bot or not kind or not key:
        raise ValueError("bot, kind and key must not be empty")
    return "ev" + hashlib.sha256(f"{bot}\x1f{kind}\x1f{key}".encode()).hexdigest()[:32]
