"""The embedded default's channel layer."""

import time
from typing import Any

from channels.layers import InMemoryChannelLayer


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
