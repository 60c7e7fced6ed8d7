"""MongoDB's order fee when the history holds a report the order document never took.

The MongoDB store writes a report to the history, then folds it into the order document: two writes.
A writer killed between them leaves the report in the history only. In paper mode that report is
another process's execution of the same client order id (the in-process paper exchange died with
it, so the next leader sends the order again and its own paper fills it): its fee must not become
the order's. The order's fee comes from the reports folded into the document (`merge.order_fee`).
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pymongo
import pytest

from tests.store import records as r
from tradefleet.domain.models import OrderStatus
from tradefleet.store import mongo_docs as docs
from tradefleet.store.mongo import MongoStore

pytestmark = pytest.mark.mongo


async def test_a_report_left_in_the_history_by_a_killed_writer_does_not_count_in_the_fee(
    mongodb_url: str,
) -> None:
    store = MongoStore(mongodb_url, database=f"tf_test_{uuid.uuid4().hex[:16]}")
    await store.open()
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongodb_url)
    try:
        o = r.order()
        await store.insert_order(o)
        # The dead process's answer: in the history, never folded into the document.
        dead = r.update(
            o.client_order_id, OrderStatus.FILLED, filled="0.00333", quote="100", fee="0.00000333"
        )
        client[store.database_name]["order_updates"].insert_one(
            store._out(docs.update_doc(dead, time.time_ns()))
        )
        stored = await store.get_order(o.client_order_id)
        assert stored is not None and stored.status is OrderStatus.PENDING
        # The next leader sends it again; its own paper fills it at another price.
        answer = r.update(
            o.client_order_id, OrderStatus.FILLED, filled="0.00330", quote="100", fee="0.0000033"
        )
        after = await store.apply_order_update(answer)
        assert after is not None and (after.filled_qty, after.fee) == (
            Decimal("0.00330"),
            Decimal("0.0000033"),
        )
        assert await store.get_order(o.client_order_id) == after
    finally:
        client.drop_database(store.database_name)
        client.close()
        await store.close()
