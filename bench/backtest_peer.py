"""backtesting.py's side of `bench.backtest`: an SMA crossover like the one in its README, long
only, trading on the crossing candle's close with a 0.1 % commission. A module of its own because
`Backtest.optimize` pickles the strategy class into its worker processes."""

from __future__ import annotations

from typing import Any

import pandas as pd
from backtesting import Strategy
from backtesting.lib import crossover


def sma(values: Any, n: int) -> Any:
    return pd.Series(values).rolling(n).mean()


class SmaCross(Strategy):  # type: ignore[misc]
    n1 = 50
    n2 = 200

    def init(self) -> None:
        self.s = self.I(sma, self.data.Close, self.n1)
        self.l = self.I(sma, self.data.Close, self.n2)

    def next(self) -> None:
        if crossover(self.s, self.l):
            if not self.position:
                self.buy()
        elif crossover(self.l, self.s):
            self.position.close()
