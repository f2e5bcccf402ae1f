"""A fixed-window request counter shared by every process through the Django cache.

Redis when REDIS_URL is set (so all server processes count together), else per process.
"""

import time

from django.core.cache import cache

from chatserver.errors import RateLimited


def throttle_check(*, key: str, limit: int, window_seconds: int) -> None:
    """Count one request for `key`; raise RateLimited (with retry_after) past `limit` in the
    current window of `window_seconds`."""
    now = time.time()
    window = int(now // window_seconds)
    cache_key = f"throttle:{key}:{window}"
    # add() only creates the counter; incr() is atomic in Redis and under LocMem's lock.
    cache.add(cache_key, 0, timeout=window_seconds + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr: a new window began
        cache.add(cache_key, 1, timeout=window_seconds + 1)
        count = 1
    if count > limit:
        raise RateLimited((window + 1) * window_seconds - now)
