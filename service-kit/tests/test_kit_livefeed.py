"""The kit's live feed without a database: stream limits, wake-ups by user and number, and the stream loop
(rows once in order, pages, heartbeats on quiet, reads only when woken, the end on shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from todo_kit.errors import LimitExceeded
from todo_kit.livefeed import LiveFeed, Quiet, ServerStopping, Subscriber, follow


def make_feed(max_streams: int = 10, per_user: int = 2) -> LiveFeed:
    return LiveFeed(
        "postgresql://unused", channel="test_feed", listener_name="test listener", max_streams=max_streams,
        max_streams_per_user=per_user, streams_noun="test streams",
    )  # fmt: skip


class Rows:
    """A user's numbered rows as a database would hold them, counting the reads."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.reads = 0

    def add(self, feed: LiveFeed, user: str, item: str) -> None:
        self.items.append(item)
        feed.wake_user(user, len(self.items))  # what the listener does when the NOTIFY arrives

    async def after(self, seq: int, limit: int) -> Sequence[tuple[int, str]]:
        self.reads += 1
        return [(n, item) for n, item in enumerate(self.items, start=1) if n > seq][:limit]


def test_a_user_and_a_host_hold_at_most_their_limits_and_an_ended_stream_frees_its_place() -> None:
    feed = make_feed(max_streams=3, per_user=2)
    alice = [feed.subscribe("alice"), feed.subscribe("alice")]
    with pytest.raises(LimitExceeded) as caught:
        feed.subscribe("alice")
    assert "2 open test streams per user" in caught.value.message
    feed.subscribe("bob")
    with pytest.raises(LimitExceeded):
        feed.subscribe("carol")
    feed.unsubscribe(alice[0])
    feed.unsubscribe(alice[0])  # twice: counted once
    assert feed.open_streams == 2
    feed.subscribe("carol")
    assert feed.open_streams == 3


def test_a_wake_up_reaches_only_the_users_streams_that_have_not_sent_the_row() -> None:
    feed = make_feed()
    behind, ahead, other = feed.subscribe("alice"), feed.subscribe("alice"), feed.subscribe("bob")
    behind.last_seq, ahead.last_seq = 4, 5
    feed.wake_user("alice", 5)
    assert (behind.wake.is_set(), ahead.wake.is_set(), other.wake.is_set()) == (True, False, False)
    # A payload of another form (not "<number> <user>") wakes nobody.
    feed._on_notify(None, 0, "test_feed", "x bob")
    assert not other.wake.is_set()
    feed._on_notify(None, 0, "test_feed", "9 bob")
    assert other.wake.is_set()


async def test_follow_yields_each_row_once_in_order_reading_in_pages_and_only_when_woken() -> None:
    feed, rows = make_feed(), Rows()
    for n in range(5):
        rows.items.append(f"old {n}")
    subscriber = feed.subscribe("alice")
    subscriber.last_seq = 1  # resumed after the first
    async with contextlib.aclosing(follow(feed, subscriber, rows.after, page=2, heartbeat_seconds=3600)) as stream:
        got = [await anext(stream) for _ in range(4)]
        assert got == ["old 1", "old 2", "old 3", "old 4"]
        assert rows.reads == 2  # pages of two: two reads while full pages came, no more until woken
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        assert not waiting.done() and rows.reads == 3  # the page that came back short, then it waits
        rows.add(feed, "alice", "new")
        async with asyncio.timeout(10):
            assert await waiting == "new"
        assert subscriber.last_seq == 6
    feed.unsubscribe(subscriber)


async def test_follow_sends_a_heartbeat_when_quiet_without_reading() -> None:
    feed, rows = make_feed(), Rows()
    subscriber = feed.subscribe("alice")
    async with contextlib.aclosing(follow(feed, subscriber, rows.after, page=10, heartbeat_seconds=0.05)) as stream:
        async with asyncio.timeout(10):
            assert [await anext(stream) for _ in range(3)] == [Quiet.HEARTBEAT] * 3
        assert rows.reads == 1


async def test_closing_the_feed_ends_its_streams_and_refuses_new_ones() -> None:
    feed, rows = make_feed(), Rows()
    subscriber: Subscriber = feed.subscribe("alice")
    stream = follow(feed, subscriber, rows.after, page=10, heartbeat_seconds=3600)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    await feed.close()
    with pytest.raises(ServerStopping) as caught:
        async with asyncio.timeout(10):
            await waiting
    assert caught.value.code.name == "UNAVAILABLE" and "resume_after" in caught.value.message
    with pytest.raises(ServerStopping):
        feed.subscribe("bob")
