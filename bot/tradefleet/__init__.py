"""tradefleet: SMA-crossover trading bots, one asyncio pipeline per trading pair."""

__version__ = "0.1.0"
