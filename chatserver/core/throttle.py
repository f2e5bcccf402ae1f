"""A request counter shared by every process through the Django cache.

Redis when REDIS_URL is set (so all server processes count together), else per process (the
embedded default runs one). A window opens at the first request counted for a key and lasts
`window_seconds`: a burst cannot straddle two fixed windows to get twice the limit.
"""

import logging
import time
from functools import cache as once

import redis
from django.conf import settings
from django.core.cache import cache

from chatserver.core.errors import RateLimited

log = logging.getLogger(__name__)


def throttle_check(*, key: str, limit: int, window_seconds: int) -> None:
    """Count one request for `key`; raise RateLimited (with retry_after) past `limit` in the
    window that the key's first request opened. Redis unreachable: its error is raised."""
    refusal = (_redis_counts([key], limit, window_seconds)[0] if settings.REDIS_URL
               else _local_count(key, limit, window_seconds))
    if refusal is not None:
        raise refusal


def throttle_check_many(*, keys: list[str], limit: int, window_seconds: int
                        ) -> list[RateLimited | None]:
    """throttle_check for each key (a key may repeat: each counts), answering per key rather
    than raising. With Redis one round trip counts them all (the chat send batch).

    Redis unreachable: nothing is counted and nothing refused (logged). The chat send batch
    and the agency notification batch call this, and both must keep storing while Redis
    restarts: messages and notices are in the database and clients resume from seqs; a few
    seconds without a send limit is the lesser harm (tests/fault/test_redis_outage.py)."""
    if not settings.REDIS_URL:
        return [_local_count(key, limit, window_seconds) for key in keys]
    try:
        return _redis_counts(keys, limit, window_seconds)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("rate counts skipped, Redis unreachable: %s", exc)
        return [None] * len(keys)


def _keys(key: str) -> tuple[str, str]:
    return f"throttle:{key}", f"throttle:{key}:start"


def _local_count(key: str, limit: int, window_seconds: int) -> RateLimited | None:
    """Count `key` in this process's cache (LocMem). incr() is atomic under LocMem's lock
    and keeps the key's expiry, so the window ends window_seconds after its first request:
    one call while a window is open (three cost 12 µs a key in the chat batch's profile).
    A key without one opens it; add() only creates, so of two first requests at once one
    creates the count and the other counts on it."""
    now = time.time()
    count_key, start_key = _keys(key)
    try:
        count = cache.incr(count_key)
    except ValueError:
        cache.add(start_key, int(now), timeout=window_seconds)
        count = 1 if cache.add(count_key, 1, timeout=window_seconds) else cache.incr(count_key)
    if count <= limit:
        return None
    started = cache.get(start_key) or now
    return RateLimited(max(0.0, started + window_seconds - now))


def _redis_counts(keys: list[str], limit: int, window_seconds: int
                  ) -> list[RateLimited | None]:
    """Count every key in one atomic script: one round trip, and no moment at which a
    count exists without its expiry (Django's incr on Redis is two commands)."""
    now = time.time()
    # The cache's own key for each name, without its check for memcached-portable keys (a
    # loop over every character, profiled in the chat batch): these names are ours.
    names = [cache.make_key(name) for key in keys for name in _keys(key)]
    replies = _count_script()(keys=names, args=[int(now), window_seconds])
    return [RateLimited(max(0.0, int(started) + window_seconds - now))
            if int(count) > limit else None
            for count, started in zip(replies[::2], replies[1::2], strict=True)]


# A window's count and start for every key pair, atomically in Redis.
_COUNT_SCRIPT = """
local out = {}
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], ARGV[1], 'NX', 'EX', ARGV[2])
  redis.call('SET', KEYS[i], 0, 'NX', 'EX', ARGV[2])
  out[#out + 1] = redis.call('INCR', KEYS[i])
  out[#out + 1] = redis.call('GET', KEYS[i + 1])
end
return out
"""


@once
def _count_script() -> redis.commands.core.Script:
    return redis.Redis.from_url(settings.REDIS_URL).register_script(_COUNT_SCRIPT)
