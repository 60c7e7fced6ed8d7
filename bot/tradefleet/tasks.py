"""Stopping asyncio tasks so that a stop always ends.

`task.cancel(); with suppress(CancelledError): await task` has two flaws this module exists for:

- On Python 3.11 a cancellation can be swallowed: `asyncio.wait_for` returns the inner result when the
  inner awaitable finished at the moment the task was cancelled (fixed in 3.12; redis-py sends every
  command through `wait_for` when a socket timeout is set). A `while True` loop (the lease's renewal,
  the risk poll) then carries on as if nothing had happened, and `await task` never returns: a bot
  stopped just after it became ready once hung there for 30 s until it was killed.
- The `suppress` cannot tell the task's CancelledError from the caller's own: a caller cancelled while
  it waits has its cancellation swallowed too.

`stop_task` cancels again until the task has ended (the next `await` in its loop takes the repeated
request), never waits longer than its bound, names a task that did not end in the log, and lets the
caller's own cancellation through.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, TypeVar

from tradefleet.logs import log_event

log = logging.getLogger("tradefleet.tasks")
T = TypeVar("T")

RECANCEL_S = 0.5
"""How often a task that has not ended yet is asked again (not sooner: a task's cleanup after the first
request, such as a final flush in a `finally`, should not be cut by the second)."""


async def stop_task(task: asyncio.Task[Any] | None, timeout_s: float = 5.0) -> bool:
    """Cancel `task` and wait until it has ended, at most `timeout_s`: True if it ended."""
    if task is None:
        return True
    return not await stop_tasks((task,), timeout_s)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout_s: float = 10.0) -> list[str]:
    """Cancel every task and wait until all have ended, at most `timeout_s`; the names of those that
    did not (logged as `task_not_ended`)."""
    tasks = [t for t in tasks if t is not asyncio.current_task()]
    pending = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        for t in pending:
            t.cancel()  # again: an earlier request may have been swallowed (see the module's doc)
        left = deadline - loop.time()
        if not pending or left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: an error it ended with is not reported again at exit
    stuck = sorted(_name(t) for t in pending)
    if stuck:
        log_event(log, "task_not_ended", logging.WARNING, tasks=stuck, waited_s=timeout_s)
    return stuck


def _name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', coro)})"


def start_eagerly(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
    """A task for `coro` whose first step runs now, on the caller's stack, instead of at the loop's
    next turn: Python 3.12's eager task start, for 3.11. Where `coro` never has to wait, it is done
    when this returns; otherwise its task goes on from where it waited, as any task would.

    Why: the loop turn between a task being created and its first step cost an order ~0.07-0.1 ms of a
    ~1.5 ms tick -> order (`bench.tick_to_order`'s `hop`), and more when other callbacks were due in
    that turn. The first step runs as the task it belongs to: `asyncio.current_task()` is that task (an
    `asyncio.timeout` entered there cancels it, not the caller) and its context variables are the
    task's own copy. The caller's cancellation cannot reach it: nothing yields while it runs.

    The task's first scheduled step hands over what the eager one left: the awaited future (the task
    then waits on it), the result or the exception. A task cancelled before that step gets the
    cancellation where `coro` waits; one that had already finished keeps its outcome."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    first = _FirstStepDone(coro)
    task = loop.create_task(first, name=name, context=context)
    caller = asyncio.current_task(loop)
    if caller is not None:
        _leave_task(loop, caller)
    _enter_task(loop, task)
    try:
        context.run(first.run)
    finally:
        _leave_task(loop, task)
        if caller is not None:
            _enter_task(loop, caller)
    return task


class _FirstStepDone(Coroutine[Any, Any, Any]):
    """`coro` with its first step already run (`run`, by `start_eagerly`): the task's first `send`
    gets that step's outcome, every later call goes to `coro` itself."""

    __slots__ = ("__qualname__", "_coro", "_outcome")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._outcome: tuple[str, Any] | None = None
        self.__qualname__ = getattr(coro, "__qualname__", type(coro).__name__)

    def run(self) -> None:
        try:
            self._outcome = ("waits", self._coro.send(None))
        except StopIteration as done:
            self._outcome = ("returned", done.value)
        except (KeyboardInterrupt, SystemExit) as e:
            self._outcome = ("raised", e)
            raise  # as a task's step would: the loop stops
        except BaseException as e:
            self._outcome = ("raised", e)

    def _take(self) -> tuple[str, Any] | None:
        outcome, self._outcome = self._outcome, None
        return outcome

    def send(self, value: Any) -> Any:
        outcome = self._take()
        if outcome is None:
            return self._coro.send(value)
        return _deliver(outcome)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        outcome = self._take()
        if outcome is not None and outcome[0] != "waits":
            return _deliver(outcome)  # finished before the task's first step: it keeps its outcome
        if val is None and tb is None:
            return self._coro.throw(typ)  # how a task throws (its cancellation)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._outcome = None
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError(f"{self.__qualname__} was started eagerly: only its task runs it")


def _deliver(outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "waits":
        return value  # the task now waits on what `coro` waits on
    if kind == "returned":
        raise StopIteration(value)
    raise value
