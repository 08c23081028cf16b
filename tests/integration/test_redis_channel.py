"""kit.channel.ChannelListener on a real Redis: messages arrive, a killed connection is
subscribed again (and says so, for what was missed), and stopping is bounded."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from plexica.kit.channel import ChannelListener

DEADLINE = 30.0


async def test_messages_arrive_a_lost_connection_comes_back_and_stop_is_bounded(
    redis_url: str,
) -> None:
    channel = f"test:{uuid.uuid4().hex}"
    name = f"listener-{uuid.uuid4().hex}"
    redis, publisher = Redis.from_url(redis_url, client_name=name), Redis.from_url(redis_url)
    messages: asyncio.Queue[str] = asyncio.Queue()
    subscriptions: asyncio.Queue[bool] = asyncio.Queue()
    lost: list[bool] = []

    async def on_message(text: str) -> None:
        await messages.put(text)

    async def on_subscribed(again: bool) -> None:
        await subscriptions.put(again)

    listener = ChannelListener(
        redis,
        channel,
        on_message=on_message,
        on_subscribed=on_subscribed,
        on_lost=lambda: lost.append(True),
        retry_after=0.05,
    )
    try:
        await listener.start(wait=DEADLINE)
        assert await asyncio.wait_for(subscriptions.get(), DEADLINE) is False
        await publisher.publish(channel, "first")
        assert await asyncio.wait_for(messages.get(), DEADLINE) == "first"

        # Only this listener's connection: other tests share this Redis.
        ours = [c["id"] for c in await publisher.client_list(_type="pubsub") if c["name"] == name]
        assert len(ours) == 1
        assert await publisher.client_kill_filter(_id=ours[0]) == 1
        assert await asyncio.wait_for(subscriptions.get(), DEADLINE) is True  # may have missed some
        assert lost == [True]
        await publisher.publish(channel, "second")
        assert await asyncio.wait_for(messages.get(), DEADLINE) == "second"
    finally:
        await asyncio.wait_for(listener.stop(), DEADLINE)
        await listener.stop()  # a second stop is a no-op
        await redis.aclose()
        await publisher.aclose()
