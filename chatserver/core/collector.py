"""The cyclic garbage collector of a serving process: no stop-the-world pauses under load.

A full collection walks every tracked object and holds the interpreter meanwhile. A server
keeps many (Django's and the libraries' from startup, about 170,000; some 45 per open socket),
and Python starts a full collection on its own whenever enough young objects have survived:
measured with 1,000 sockets in rooms of 10 on PostgreSQL, one every 10-20 s at 2,200 messages
a second, each pausing every socket for 100-180 ms (bench/README.md). So, once the
application is loaded:

- what startup made is frozen (gc.freeze): it lives as long as the process and is never
  walked again;
- the young generations are collected as Python does by default (a few milliseconds each);
- the full collection runs on a timer, every SONOR_GC_FULL_SECONDS, not whenever young
  objects survive. Cyclic garbage that has aged into the oldest generation waits for it:
  its memory comes back at most that much later. Each one is logged with what it took.
"""

import gc
import logging
import threading
import time

log = logging.getLogger(__name__)

# Python's own default for the young generations; the oldest only on the timer.
YOUNG_THRESHOLDS = (700, 10)
NEVER = 2**31 - 1


def collector_tune(*, full_every_seconds: float) -> None:
    """Freeze what exists now, and make full collections happen only every
    `full_every_seconds` (from a daemon thread). Call once, after the application is loaded
    and before serving."""
    gc.collect()  # what startup left as garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*YOUNG_THRESHOLDS, NEVER)
    log.info("garbage collector: %s objects of startup frozen, a full collection every %s s",
             gc.get_freeze_count(), full_every_seconds)
    threading.Thread(target=_full_collections, args=(full_every_seconds,),
                     name="full-gc", daemon=True).start()


def _full_collections(every_seconds: float) -> None:
    while True:
        time.sleep(every_seconds)
        started = time.perf_counter()
        found = gc.collect()
        log.info("full garbage collection: %s unreachable objects freed in %.0f ms, "
                 "%s objects tracked", found, 1000 * (time.perf_counter() - started),
                 len(gc.get_objects()))
