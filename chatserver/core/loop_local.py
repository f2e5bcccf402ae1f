"""One object per running event loop: a server process runs one loop, tests make many."""

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self.make = make
        self.by_loop: dict[int, tuple[asyncio.AbstractEventLoop, T]] = {}

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        entry = self.by_loop.get(id(loop))
        if entry is None or entry[0] is not loop:  # an id reused by a later loop
            entry = self.by_loop[id(loop)] = (loop, self.make(loop))
        return entry[1]
