"""Paper execution on its own: walking levels, fees, and what a real exchange would say."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from tradefleet.adapters.paper import PaperExecution
from tradefleet.domain.models import Order, OrderStatus, Side
from tradefleet.errors import ExchangeUnavailable, OrderRejected

ASKS = [(D("100"), D("1")), (D("101"), D("2"))]
BIDS = [(D("99"), D("1")), (D("98"), D("1"))]


def book(side: Side, depth: int) -> list[tuple[D, D]]:
    return (ASKS if side is Side.BUY else BIDS)[:depth]


def order(side: Side, *, qty: str | None = None, quote: str | None = None, cid: str = "tf1") -> Order:
    return Order(cid, "b", "binance", "X/Y", side, "MARKET", "s", OrderStatus.PENDING, 0, 0,
                 quantity=None if qty is None else D(qty), quote_amount=None if quote is None else D(quote))  # fmt: skip


def paper(levels=book) -> PaperExecution:
    return PaperExecution(
        levels, D("0.001"), base_asset="X", quote_asset="Y", step_size=D("0.01"), clock=lambda: 7
    )


async def test_buy_by_quote_walks_levels_in_whole_steps_and_charges_fee_in_base():
    p = paper()
    u = await p.submit(order(Side.BUY, quote="201"))
    # 1 X at 100, then the 101 left buys exactly 1.00 X at 101.
    assert u.status is OrderStatus.FILLED and u.filled_qty == D("2.00") and u.cum_quote == D("201.00")
    assert u.fee == D("2.00") * D("0.001") and u.fee_asset == "X"
    reports = [p._queue.get_nowait() for _ in range(p._queue.qsize())]
    assert [r.exec_type for r in reports] == ["NEW", "TRADE", "TRADE"]
    assert reports[-1].status is OrderStatus.FILLED and reports[1].status is OrderStatus.PARTIALLY_FILLED


async def test_sell_beyond_the_book_expires_with_what_it_filled():
    u = await paper().submit(order(Side.SELL, qty="5"))
    assert u.status is OrderStatus.EXPIRED and u.filled_qty == D("2") and u.cum_quote == D("197")
    assert u.fee == D("197") * D("0.001") and u.fee_asset == "Y"


async def test_empty_book_is_not_sent_and_a_repeated_id_is_refused():
    p = PaperExecution(lambda side, depth: [], D("0.001"), base_asset="X", quote_asset="Y", book_wait_s=0.1)
    with pytest.raises(ExchangeUnavailable, match="resyncing"):
        await p.submit(order(Side.BUY, quote="10"))
    # Not sent means not known: the same id may go again once the book is back.
    assert await p.query(order(Side.BUY, quote="10")) is None
    p._levels = book
    u = await p.submit(order(Side.BUY, quote="10"))
    assert u.status is OrderStatus.FILLED
    with pytest.raises(OrderRejected):
        await p.submit(order(Side.BUY, quote="10"))
    assert (await p.query(order(Side.BUY, quote="10"))) is not None
    assert await p.query(order(Side.BUY, quote="10", cid="tf-other")) is None


async def test_order_waits_for_a_resyncing_book_then_fills_at_it():
    levels: list[tuple[D, D]] = []
    p = PaperExecution(lambda side, depth: levels[:depth], D("0"), base_asset="X", quote_asset="Y")

    async def book_comes_back() -> None:
        await asyncio.sleep(0.1)
        levels.extend(ASKS)

    task = asyncio.create_task(book_comes_back())
    u = await p.submit(order(Side.BUY, quote="100"))
    await task
    assert u.status is OrderStatus.FILLED and u.cum_quote == D("100")


async def test_paper_fills_are_the_simulators_fills_to_the_last_digit():
    """The same book, the same orders: the paper engine and the simulator's matching (what the
    backtest and the demo's exchange mode fill with) agree on every fill, fee and status. A BUY
    that walks a dozen levels, a SELL of what it bought (quote fees rounded down to 8 decimals),
    and a BUY bigger than the book's first levels' step rounding all go through both."""
    import tradefleet_sim
    from tradefleet.adapters.inprocess import InProcessExchange
    from tradefleet.domain.position import quantize_down

    csv = Path(tradefleet_sim.__file__).parent / "data" / "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"

    def exchange() -> InProcessExchange:  # a deep seeded book of ~4,000 USDT levels, never re-centred
        return InProcessExchange(csv, symbol="BTC/USDT", history=200, clock=lambda: 7, levels_per_side=1000)

    sim, twin = exchange(), exchange()
    assert sim.market.levels("BUY", 100) == twin.market.levels("BUY", 100)
    rules = await sim.fetch_symbol_rules("BTC/USDT")
    paper = PaperExecution(
        lambda side, depth: twin.market.levels(side.value, depth),
        D("0.001"),
        base_asset="BTC",
        quote_asset="USDT",
        # As the bot reads it from exchangeInfo: "0.00001000" (quantizing to that notation once cut
        # quantities to 8 decimals instead of whole steps).
        step_size=D(f"{rules.step_size:.8f}"),
        clock=lambda: 7,
    )

    async def both(o: Order) -> None:
        ours = await paper.submit(o)
        theirs = await sim.submit(o)
        paper_trades = [u for u in _drain(paper._queue) if u.exec_type == "TRADE"]
        sim_trades = [u for u in _drain(sim._queue) if u.exec_type == "TRADE"]
        assert len(paper_trades) > (3 if o.quote_amount and o.quote_amount > 10_000 else 0)
        assert [(u.last_price, u.last_qty, u.fee, u.fee_asset) for u in paper_trades] == [
            (u.last_price, u.last_qty, u.fee, u.fee_asset) for u in sim_trades
        ]
        assert (ours.status, ours.filled_qty, ours.cum_quote, ours.fee, ours.fee_asset) == (
            theirs.status, theirs.filled_qty, theirs.cum_quote, theirs.fee, theirs.fee_asset,
        )  # fmt: skip
        # The twin's book follows the simulator's: the paper engine never takes liquidity.
        twin.market.take_liquidity(o.side.value, base_qty=o.quantity, quote_qty=o.quote_amount)
        assert twin.market.levels("BUY", 50) == sim.market.levels("BUY", 50)
        assert twin.market.levels("SELL", 50) == sim.market.levels("SELL", 50)

    await both(order(Side.BUY, quote="50000", cid="tf-b1"))
    bought = sim.account.free("BTC")
    await both(order(Side.SELL, qty=str(quantize_down(bought, rules.step_size)), cid="tf-s1"))
    await both(order(Side.BUY, quote="1234.56", cid="tf-b2"))


def _drain(queue: asyncio.Queue) -> list:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
        queue.task_done()
    return out
