"""The channel layers: the embedded default's, and Redis pub/sub's. Both add
group_send_many: many (group, message) pairs sent in order, at once."""

import time
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer


class InMemoryLayer(InMemoryChannelLayer):
    """Channels' in-memory layer, sweeping for expired messages and group members at most
    once a second instead of on every send and receive: the sweep walks every channel and
    group, which made each delivery cost O(sockets) and opening N sockets O(N²)."""

    SWEEP_SECONDS = 1.0
    _swept_at = 0.0

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        # The base class keeps channel_capacity's globs uncompiled, unlike its siblings.
        self.channel_capacity = self.compile_capacities(self.channel_capacity)

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at >= self.SWEEP_SECONDS:
            self._swept_at = now
            super()._clean_expired()

    async def group_send_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for group, message in messages:
            await self.group_send(group, message)


class RedisPubSubLayer(RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, where group_send_many publishes a batch's messages in
    one pipeline per Redis shard: one round trip instead of one per group, each taken under
    the shard's lock while the event loop also serves sockets and requests."""

    async def group_send_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        layer = self._get_layer()
        by_shard: dict[Any, list[tuple[str, bytes]]] = {}
        for group, message in messages:
            channel = layer._get_group_channel_name(group)
            by_shard.setdefault(layer._get_shard(channel), []).append(
                (channel, self.serialize(message)))
        for shard, items in by_shard.items():
            async with shard._lock:
                shard._ensure_redis()
                pipe = shard._redis.pipeline(transaction=False)
                for channel, data in items:
                    pipe.publish(channel, data)
                await pipe.execute()
