"""`tradefleet.tasks.start_eagerly`: a task whose first step runs on the caller's stack (Python 3.12's
eager start, for 3.11). It must be a task like any other from its first line: `current_task` is it,
an `asyncio.timeout` entered in that step cancels it and not the caller, its context variables are
its own, and a cancellation reaches it where it waits. Deterministic: futures the test resolves, no
sleeps that decide anything."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from tradefleet.tasks import start_eagerly

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="caller")


async def test_a_coroutine_that_never_waits_has_finished_when_it_returns() -> None:
    ran: list[Any] = []

    async def quick() -> int:
        ran.append(asyncio.current_task())
        where.set("task")
        return 7

    task = start_eagerly(quick(), name="quick")
    assert ran == [task], "ran at once, as its own task"
    assert asyncio.current_task() is not task
    assert where.get() == "caller", "its context variables are its own"
    assert await task == 7


async def test_one_that_waits_goes_on_as_its_task() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[tuple[str, Any]] = []

    async def waits() -> int:
        steps.append(("first", asyncio.current_task()))
        value = await gate
        steps.append(("after", asyncio.current_task()))
        return value * 2

    task = start_eagerly(waits(), name="waits")
    assert steps == [("first", task)] and not task.done()
    await asyncio.sleep(0)
    gate.set_result(21)
    assert await task == 42
    assert steps == [("first", task), ("after", task)]
    assert task.get_name() == "waits" and "waits" in repr(task)


async def test_a_timeout_entered_in_the_first_step_cancels_the_task_not_the_caller() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.01):
                await never
        except TimeoutError:
            return "timed out"
        return "not reached"

    task = start_eagerly(bounded())
    await asyncio.wait({task}, timeout=30)  # not `await task`: a cancellation would go on into it
    assert task.result() == "timed out"
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


@pytest.mark.parametrize("before_its_first_turn", [True, False])
async def test_a_cancellation_reaches_it_where_it_waits(before_its_first_turn: bool) -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await gate
        finally:
            cleaned.append("finally")

    task = start_eagerly(waits())
    if not before_its_first_turn:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled() and cleaned == ["finally"]


async def test_one_cancelled_after_it_finished_keeps_its_outcome() -> None:
    async def quick() -> str:
        return "done"

    async def fails() -> None:
        raise ValueError("bad input")

    done, failed = start_eagerly(quick()), start_eagerly(fails())
    done.cancel()
    failed.cancel()
    assert await done == "done"
    with pytest.raises(ValueError, match="bad input"):
        await failed


async def test_the_callers_task_is_current_again_afterwards_even_when_it_raises() -> None:
    caller = asyncio.current_task()

    async def fails() -> None:
        assert asyncio.current_task() is not caller
        raise KeyError("x")

    task = start_eagerly(fails())
    assert asyncio.current_task() is caller
    with pytest.raises(KeyError):
        await task


async def test_nothing_but_its_task_may_await_it() -> None:
    async def quick() -> None:
        return None

    task = start_eagerly(quick())
    with pytest.raises(TypeError, match="started eagerly"):
        task.get_coro().__await__()  # type: ignore[union-attr]
    await task
