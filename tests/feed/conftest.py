"""Both book paths for the feed tests: the pure-Python reference and the native (Rust) book.

The native path must run wherever it can be built: in CI (`CI=true`) or with
TFTEST_REQUIRE_NATIVE=1 a missing `tradefleet_native` fails the native cases instead of
skipping them (`make install` builds it when cargo is present)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tradefleet.domain import native_book
from tradefleet.domain.native_book import SyncLike, new_book_sync

NATIVE_REQUIRED = os.environ.get("CI") == "true" or os.environ.get("TFTEST_REQUIRE_NATIVE") == "1"


def _native_param() -> object:
    if native_book.AVAILABLE or NATIVE_REQUIRED:
        return pytest.param(True, id="native")
    reason = "NATIVE BOOK NOT TESTED: tradefleet_native is not installed (no cargo at `make install`?)"
    return pytest.param(True, id="native", marks=pytest.mark.skip(reason=reason))


BOOK_PATHS = [pytest.param(False, id="pure"), _native_param()]


@pytest.fixture(params=BOOK_PATHS, scope="module")
def native(request: pytest.FixtureRequest) -> bool:
    """False: the pure book and msgspec parser; True: the native parser and book."""
    return bool(request.param)


@pytest.fixture(scope="module")
def make_sync(native: bool) -> Callable[[str], SyncLike]:
    return lambda market_id: new_book_sync(market_id, native=native)
