"""A serving process's garbage collector: startup frozen, no full collection on Python's own
schedule, one on the timer that frees cyclic garbage grown old. Run in a child process: the
test runner's own collector stays as it is."""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import gc, logging, sys, time, weakref
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from chatserver.core.collector import collector_tune

    class Node:
        pass

    def old_cycle():
        node = Node()
        node.me = node  # only the cyclic collector frees it
        gc.collect(1)  # it survives the young collections: now in the oldest generation
        return weakref.ref(node)

    collector_tune(full_every_seconds=float(sys.argv[1]))
    print("frozen", gc.get_freeze_count() > 0, "thresholds", gc.get_threshold(), flush=True)
    ref = old_cycle()
    kept = [[] for _ in range(100_000)]  # enough for Python to have run a full collection
    print("after the young collections", "alive" if ref() is not None else "freed", flush=True)
    deadline = time.monotonic() + 10
    while ref() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    print("after the timer", "alive" if ref() is not None else "freed", flush=True)
""")


def test_old_cyclic_garbage_waits_for_the_timed_full_collection() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, "0.5"], capture_output=True, text=True,
                          timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("garbage collector: ") and "frozen" in lines[0]
    assert lines[1] == "frozen True thresholds (700, 10, 2147483647)"
    assert "after the young collections alive" in lines
    assert "after the timer freed" in lines
    assert any(line.startswith("full garbage collection: ") for line in lines)
