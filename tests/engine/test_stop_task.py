"""`tradefleet.tasks.stop_task`: a stop always ends, even when a task's loop loses its cancellation.

A bot with a Redis lease, stopped just after it became ready, once logged nothing more for 30 s and
was killed: its shutdown awaited a cancelled task that carried on. On Python 3.11, `asyncio.wait_for`
(redis-py sends every command through it when a socket timeout is set) returns the inner result when
the inner awaitable completes in the same loop step as the cancellation: the loop around it never
sees the request. These tests drive exactly that race, deterministically (no sleeps, no timings).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from tradefleet.tasks import stop_task, stop_tasks


class CommandLoop:
    """A renewal loop shaped like the lease's: one command after another through `wait_for`."""

    def __init__(self) -> None:
        self.pending: asyncio.Future[int] | None = None
        self.commands = 0
        self.ready = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.pending = loop.create_future()
            self.ready.set()
            await asyncio.wait_for(self.pending, 3600)
            self.commands += 1


async def stubborn(release: asyncio.Event) -> None:
    """A task that ignores every cancellation until `release` is set."""
    while not release.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def test_the_race_loses_a_single_cancellation_on_this_python() -> None:
    """The premise: one `cancel()` that meets a reply arriving in the same step is lost (3.11)."""
    cmd = CommandLoop()
    task = asyncio.create_task(cmd.run())
    await cmd.ready.wait()
    assert cmd.pending is not None
    cmd.pending.set_result(1)  # the reply arrives ...
    task.cancel()  # ... as the stop does
    for _ in range(5):
        await asyncio.sleep(0)
    try:
        if sys.version_info < (3, 12):
            assert not task.done() and cmd.commands == 1, "3.11 swallowed nothing: the premise is gone"
        else:
            assert task.cancelled()
    finally:
        assert await stop_task(task, 5)


async def test_stop_task_ends_a_loop_whose_cancellation_was_swallowed() -> None:
    cmd = CommandLoop()
    task = asyncio.create_task(cmd.run())
    await cmd.ready.wait()
    assert cmd.pending is not None
    cmd.pending.set_result(1)
    assert await stop_task(task, 30), "the loop did not end"
    assert task.done()


async def test_a_task_that_never_ends_is_given_up_on_and_named(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()
    task = asyncio.create_task(stubborn(release), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="tradefleet.tasks"):
        stuck = await stop_tasks([task], 0.2)
    assert stuck and stuck[0].startswith("stubborn"), stuck
    assert any(getattr(r, "event", None) == "task_not_ended" for r in caplog.records)
    release.set()
    assert await stop_task(task, 30)


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    """`cancel(); with suppress(CancelledError): await task` swallows the caller's cancellation too;
    a caller of `stop_task` that is cancelled while it waits is cancelled."""
    release = asyncio.Event()
    inner = asyncio.create_task(stubborn(release))
    await asyncio.sleep(0)
    caller = asyncio.create_task(stop_task(inner, 3600))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    assert await stop_task(inner, 30)


async def test_an_error_a_task_ended_with_is_retrieved_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    assert await stop_task(task, 5)
    assert isinstance(task.exception(), RuntimeError)
