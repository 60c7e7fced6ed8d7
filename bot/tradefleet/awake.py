"""An event loop that can be kept awake for a moment: it polls instead of sleeping until a deadline.

Why (measured with `bench.tick_to_order`): a bot is idle between market frames, and its CPU with
it. The first Python to run after a few milliseconds of idle runs several times slower than the same
code run again at once (caches, branch history and the CPU itself have gone cold or to other work):
the same order path took ~2.0 ms from an idle loop and ~1.65 ms when it had just been rehearsed
(`engine.hot_close`) and the loop had not gone to sleep since. So, around a candle's close, the bot
holds its loop awake (`keep_awake`): the selector is asked with a timeout of 0 until the deadline,
and the loop goes round without sleeping. It costs a core for the held moment (a few tens of
milliseconds per candle), and nothing otherwise: past the deadline the loop sleeps as any does.

While held, Python's cyclic garbage collector waits too (`gc.disable`, restored when the hold ends
or the loop closes; left alone if it was already off): a full collection is several milliseconds of
the loop's thread at whatever moment allocations trigger it, and a reference cycle can wait the few
tens of milliseconds. Reference counting frees everything else as ever.

`run(main)` runs a coroutine on such a loop (the bot's `main` does); in any other loop (a test's,
an application embedding the engine) `keep_awake` does nothing and says so (False).
"""

from __future__ import annotations

import asyncio
import gc
import selectors
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_SELECTORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AwakeSelector] = weakref.WeakKeyDictionary()


class AwakeSelector(selectors.DefaultSelector):
    """The platform's default selector, asked with a timeout of 0 while held (`hold`); the cyclic
    garbage collector is paused meanwhile."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._until = 0.0
        self._gc_paused = False  # this hold turned the collector off (and turns it back on)

    def hold(self, until: float) -> None:
        """Poll without sleeping until `until` (the clock's seconds); a later deadline extends it."""
        if not self._until and gc.isenabled():
            gc.disable()
            self._gc_paused = True
        self._until = max(self._until, until)

    def release(self) -> None:
        self._until = 0.0
        self._resume_gc()

    def close(self) -> None:
        self._resume_gc()
        super().close()

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    @property
    def until(self) -> float:
        """The hold's deadline (0.0: none)."""
        return self._until

    def timeout(self, timeout: float | None) -> float | None:
        """The timeout the loop's wait gets: 0 while held, else the one asked for."""
        if self._until:
            if self._clock() < self._until:
                return 0
            self.release()
        return timeout

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return super().select(self.timeout(timeout))


def new_event_loop(clock: Callable[[], float] = time.monotonic) -> asyncio.AbstractEventLoop:
    """A selector event loop whose wait `keep_awake` can hold."""
    selector = AwakeSelector(clock)
    loop = asyncio.SelectorEventLoop(selector)
    _SELECTORS[loop] = selector
    return loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on a loop from `new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def keep_awake(until: float) -> bool:
    """Hold the running loop awake until `until` (`time.monotonic()` seconds). False, and nothing
    done, when the loop is not one of `new_event_loop`'s."""
    selector = _SELECTORS.get(asyncio.get_running_loop())
    if selector is None:
        return False
    selector.hold(until)
    return True


def held_until() -> float:
    """Until when the running loop is held awake (`time.monotonic()` seconds; 0.0: it is not)."""
    selector = _SELECTORS.get(asyncio.get_running_loop())
    return selector.until if selector is not None else 0.0


def let_sleep() -> None:
    """End the running loop's hold now (nothing when it has none)."""
    selector = _SELECTORS.get(asyncio.get_running_loop())
    if selector is not None:
        selector.release()
