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
    window that the key's first request opened."""
    now = time.time()
    count_key, start_key = _keys(key)
    # add() only creates; incr() is atomic in Redis and under LocMem's lock, and keeps the
    # key's expiry, so the window ends window_seconds after its first request. Whole seconds
    # for the start: the batch script below stores the same.
    cache.add(start_key, int(now), timeout=window_seconds)
    cache.add(count_key, 0, timeout=window_seconds)
    try:
        count = cache.incr(count_key)
    except ValueError:  # expired between add and incr: a new window began
        cache.add(count_key, 1, timeout=window_seconds)
        count = 1
    if count > limit:
        started = cache.get(start_key) or now
        raise RateLimited(max(0.0, started + window_seconds - now))


def throttle_check_many(*, keys: list[str], limit: int, window_seconds: int
                        ) -> list[RateLimited | None]:
    """throttle_check for each key (a key may repeat: each counts), answering per key rather
    than raising. With Redis one round trip counts them all (the chat send batch).

    Redis unreachable: nothing is counted and nothing refused (logged). The chat send batch
    and the agency notification batch call this, and both must keep storing while Redis
    restarts: messages and notices are in the database and clients resume from seqs; a few
    seconds without a send limit is the lesser harm (tests/fault/test_redis_outage.py)."""
    if not settings.REDIS_URL:
        return [_one(key, limit, window_seconds) for key in keys]
    now = time.time()
    # The cache's own key for each name, without its check for memcached-portable keys (a
    # loop over every character, profiled in the chat batch): these names are ours.
    names = [cache.make_key(name) for key in keys for name in _keys(key)]
    try:
        replies = _count_script()(keys=names, args=[int(now), window_seconds])
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("rate counts skipped, Redis unreachable: %s", exc)
        return [None] * len(keys)
    answers: list[RateLimited | None] = []
    for count, started in zip(replies[::2], replies[1::2], strict=True):
        answers.append(RateLimited(max(0.0, int(started) + window_seconds - now))
                       if int(count) > limit else None)
    return answers


def _keys(key: str) -> tuple[str, str]:
    return f"throttle:{key}", f"throttle:{key}:start"


def _one(key: str, limit: int, window_seconds: int) -> RateLimited | None:
    try:
        throttle_check(key=key, limit=limit, window_seconds=window_seconds)
    except RateLimited as exc:
        return exc
    return None


# What throttle_check does for one key, for every key pair, atomically in Redis.
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
