"""Start a coroutine at once, in the caller's step, and make a task only if it has to wait.

A room's frame goes to every local member's socket; a task per socket per frame cost more than
the write itself (profiled in a room of 1,000: creating and scheduling the tasks took about as
long as framing and writing the bytes). A socket write almost never waits, so it runs to its
end right here; the rare one that waits (a full transport buffer) continues as a task. This is
what asyncio's eager_task_factory does from Python 3.12 on.
"""

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> "asyncio.Future[None] | None":
    """Run `coro` up to its first wait: None if it finished, else the task that finishes it.
    An exception it raises before waiting is raised here."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, waiting_on))


@types.coroutine
def _finish(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Hand the task what `coro` waits on, then drive `coro` as the task is woken (or
    cancelled) until it returns."""
    while True:
        try:
            value = yield waiting_on
        except BaseException as exc:  # the task was cancelled (or its awaitable failed)
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(value)
            except StopIteration:
                return
