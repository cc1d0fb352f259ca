"""The relay and other processes' hints on PostgreSQL: a hint that arrives while this
process's own commit is in flight is still acted on when that commit fails."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from feed.brokers.memory import MemoryBroker
from feed.metrics import Metrics
from feed.relay import Relay
from feed.render import Renderer
from feed.store import Store, make_engine
from tests.services import Postgres
from tests.test_relay import RecordingHub
from tests.waiting import until

# The advisory lock the refusing trigger waits on, so the test holds a commit in flight.
HELD = 4242
REFUSED = "refused at commit"

# A post with this body is refused when its transaction commits, not before: the
# trigger runs at COMMIT, waits while the test holds ``HELD``, then raises.
REFUSE_AT_COMMIT = [
    f"""
    CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_lock({HELD});
        PERFORM pg_advisory_unlock({HELD});
        RAISE EXCEPTION 'refused at commit';
    END $$
    """,
    f"""
    CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON posts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.body = '{REFUSED}')
    EXECUTE FUNCTION refuse_at_commit()
    """,
]


def test_a_late_hint_heard_during_a_commit_that_fails_is_still_read(
    postgres: Postgres,
) -> None:
    url = postgres.new_database()

    async def main() -> None:
        ours = Store(make_engine(url))
        theirs = Store.from_url(url)  # another process, whose hint reaches us late
        await ours.create_schema()
        outside = make_engine(url)
        with outside.begin() as conn:
            for statement in REFUSE_AT_COMMIT:
                conn.execute(text(statement))
        hub = RecordingHub()
        metrics = Metrics(hub.stats, MemoryBroker().status, frozenset)
        # No poll for an hour: only a hint, or our own announcement, brings an event.
        relay = Relay(ours, MemoryBroker(), hub, Renderer(), 3600, metrics)
        await relay.start()
        holder = outside.connect()
        try:
            other = await theirs.create_post("general", "bob", "from elsewhere")
            assert other.event_id is not None
            holder.execute(text(f"SELECT pg_advisory_lock({HELD})"))
            failing = asyncio.ensure_future(ours.create_post("general", "ann", REFUSED))

            def in_flight() -> int:
                with outside.connect() as conn:
                    waiting = text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND objid = :key AND NOT granted"
                    )
                    return int(conn.execute(waiting, {"key": HELD}).scalar_one())

            # Our commit has reached COMMIT and waits there.
            await asyncio.to_thread(until, in_flight, timeout=10)
            # The other process's NOTIFY, late: it arrives now.
            relay.hint(other.event_id)
            holder.execute(text(f"SELECT pg_advisory_unlock({HELD})"))
            with pytest.raises(DBAPIError, match=REFUSED):
                await failing
            async with asyncio.timeout(5):
                await hub.reached(other.event_id)
            assert [e for batch in hub.batches for e in batch] == [other.event_id]
        finally:
            holder.close()
            await relay.close()
            ours.close()
            theirs.close()
            outside.dispose()

    asyncio.run(main())
