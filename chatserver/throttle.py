"""A request counter shared by every process through the Django cache.

Redis when REDIS_URL is set (so all server processes count together), else per process (the
embedded default runs one). A window opens at the first request counted for a key and lasts
`window_seconds`: a burst cannot straddle two fixed windows to get twice the limit.
"""

import time

from django.core.cache import cache

from chatserver.errors import RateLimited


def throttle_check(*, key: str, limit: int, window_seconds: int) -> None:
    """Count one request for `key`; raise RateLimited (with retry_after) past `limit` in the
    window that the key's first request opened."""
    now = time.time()
    count_key, start_key = f"throttle:{key}", f"throttle:{key}:start"
    # add() only creates; incr() is atomic in Redis and under LocMem's lock, and keeps the
    # key's expiry, so the window ends window_seconds after its first request.
    cache.add(start_key, now, timeout=window_seconds)
    cache.add(count_key, 0, timeout=window_seconds)
    try:
        count = cache.incr(count_key)
    except ValueError:  # expired between add and incr: a new window began
        cache.add(count_key, 1, timeout=window_seconds)
        count = 1
    if count > limit:
        started = cache.get(start_key) or now
        raise RateLimited(max(0.0, started + window_seconds - now))
