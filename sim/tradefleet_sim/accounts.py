"""Simulated Binance accounts: API key/secret pairs with spot balances.

A default account (`DEFAULT_API_KEY` / `DEFAULT_API_SECRET`, 100000 USDT and 0 BTC) exists in every
simulator so tests, the demo and benchmarks can trade without setup; `Accounts.add` makes more.
Balances are Decimal and only change through `debit`/`credit`, which refuse to go negative: the
matching code checks first and a bug then raises instead of minting money.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

DEFAULT_API_KEY = "tradefleet-sim-key"
DEFAULT_API_SECRET = "tradefleet-sim-secret"
DEFAULT_BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("0")}


@dataclass
class Account:
    api_key: str
    secret: str = field(repr=False)
    balances: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)  # held by resting orders

    def free(self, asset: str) -> Decimal:
        return self.balances.get(asset, Decimal(0))

    def held(self, asset: str) -> Decimal:
        return self.locked.get(asset, Decimal(0))

    def lock(self, asset: str, amount: Decimal) -> None:
        self.debit(asset, amount)
        self.locked[asset] = self.held(asset) + amount

    def unlock(self, asset: str, amount: Decimal) -> None:
        amount = min(amount, self.held(asset))
        self.locked[asset] = self.held(asset) - amount
        self.credit(asset, amount)

    def spend_locked(self, asset: str, amount: Decimal) -> None:
        if amount > self.held(asset):
            raise ValueError(f"{asset} locked {self.held(asset)} < {amount}")
        self.locked[asset] = self.held(asset) - amount

    def debit(self, asset: str, amount: Decimal) -> None:
        if amount > self.free(asset):
            raise ValueError(f"{asset} balance {self.free(asset)} < {amount}")
        self.balances[asset] = self.free(asset) - amount

    def credit(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.free(asset) + amount

    def verify(self, payload: str, signature: str) -> bool:
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        # HMAC signatures are not case-sensitive on Binance.
        return hmac.compare_digest(expected, signature.lower())


class Accounts:
    def __init__(self, balances: Mapping[str, Decimal] | None = None) -> None:
        self._by_key: dict[str, Account] = {}
        self.add(DEFAULT_API_KEY, DEFAULT_API_SECRET, balances or DEFAULT_BALANCES)

    def add(self, api_key: str, secret: str, balances: Mapping[str, Decimal]) -> Account:
        account = Account(api_key, secret, {k: Decimal(v) for k, v in balances.items()})
        self._by_key[api_key] = account
        return account

    def get(self, api_key: str) -> Account | None:
        return self._by_key.get(api_key)

    def describe(self) -> dict[str, dict[str, str]]:
        return {k[:4] + "…": {a: str(v) for a, v in acc.balances.items()} for k, acc in self._by_key.items()}
