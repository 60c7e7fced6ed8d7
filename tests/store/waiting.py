"""Wait on a condition with a generous deadline: the test machine is shared and slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tradefleet.metrics import BotMetrics


async def eventually(
    condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not become true within {timeout}s")
        await asyncio.sleep(0.01)


def sample(metrics: BotMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
