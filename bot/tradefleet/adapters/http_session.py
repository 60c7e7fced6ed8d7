"""The bot's aiohttp client sessions: one place that says how they connect.

aiohttp picks its DNS resolver by what is installed: `aiodns` when it can be imported (it is not in
the bot image, but the test and bench extras pull it in), the standard library's `getaddrinfo` in the
loop's executor otherwise. With `aiodns` (pycares 5), every session's connector opens a c-ares channel
at construction, which starts c-ares' own event thread, and closing one starts pycares' channel
reaper thread: a ready paper bot ran 4 threads instead of 2 (the loop and the SQLite writer), each
with its own stack and malloc arena, whatever the hosts it talks to. So the resolver is chosen here,
the same everywhere: `ThreadedResolver` starts nothing until a host name has to be resolved (IP
literals are never resolved), then uses the loop's default executor, one worker for a bot's few
lookups (aiohttp caches each answer for 10 s). Same bot, same threads, in the venv and in the image.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tradefleet.adapters.http1 import retry_after_seconds


def retry_after(headers: Any) -> float | None:
    """The seconds an answer's `Retry-After` header asks for (never negative); None without one or
    with one that is not a number of seconds."""
    value = headers.get("Retry-After")
    return retry_after_seconds(value) if isinstance(value, str) else None


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An `aiohttp.ClientSession` that never follows an environment proxy (`trust_env=False`) and
    resolves names with `aiohttp.ThreadedResolver`. Call it inside the running loop."""
    if "connector" in kwargs or "trust_env" in kwargs:
        raise TypeError("client_session() sets connector and trust_env itself")
    connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
    return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)
