"""One event loop for every model, judge and hook call of the session.

The loop runs in a daemon thread, so pytest's main thread (which runs the items one after the
other) only ever *waits* for results that are already being computed. Calls are admitted by a
priority limiter: at most ``concurrency`` in flight, and a waiting call of an earlier prompt-set
goes before a later one, so items finish roughly in collection order while the pipe stays full.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PriorityLimiter:
    """An asyncio semaphore whose waiters are woken lowest priority value first."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        self._free = limit
        self._waiters: list[tuple[Any, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.in_flight = 0
        self.peak = 0

    async def acquire(self, priority: Any) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._order), waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled in the same tick: the slot was handed to us but never
                # counted in flight; pass it on as it is.
                if waiter.done() and not waiter.cancelled():
                    self._hand_on()
                raise
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        if self.in_flight <= 0:
            raise RuntimeError("PriorityLimiter.release() without a matching acquire()")
        self.in_flight -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """Give a free slot to the best waiter, or back to the pool."""
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def run(self, priority: Any, fn: Callable[[], Awaitable[T]]) -> T:
        await self.acquire(priority)
        try:
            return await fn()
        finally:
            self.release()


HEARTBEAT = 0.25  # seconds between the loop's "still turning" marks


class Scheduler:
    """Owns the loop thread; ``submit`` hands back a concurrent Future the caller can block on.

    The loop marks a heartbeat every quarter second. Code that blocks the loop (an ``async def``
    hook calling ``time.sleep``) stops it, and with it every timeout on the loop: the waiting
    side reads :meth:`stalled_for` to notice that, instead of waiting for ever.
    """

    def __init__(self, concurrency: int) -> None:
        self.limiter = PriorityLimiter(concurrency)
        self._loop = asyncio.new_event_loop()
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pytest-osi-scheduler", daemon=True)
        self._thread.start()
        self._closed = False
        self._loop.call_soon_threadsafe(self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self._loop.call_later(HEARTBEAT, self._heartbeat)

    def stalled_for(self) -> float:
        """Seconds since the loop last turned (about 0 while it is healthy)."""
        return max(0.0, time.monotonic() - self._beat - HEARTBEAT)

    def _run(self) -> None:
        while True:
            try:
                self._loop.run_forever()
                return  # stopped by close()
            except BaseException:  # noqa: BLE001
                # A task let SystemExit/KeyboardInterrupt escape: asyncio stops the loop for it.
                # Keep serving the other calls; the task itself has recorded the exception.
                if self._closed:
                    return

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None, timeout: float = 10.0) -> None:
        """Cancel what is still running, run ``cleanup`` on the loop (closing HTTP clients must
        happen before the loop goes away), then stop and join the thread."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            self._loop.close()  # the loop thread died: nothing can run on it, so don't wait
            return
        if self.stalled_for() > 1.0:
            # Something blocks the loop: it cannot run the shutdown. Don't wait for it (the
            # thread is a daemon and dies with the process); Ctrl-C must stop the run promptly.
            timeout = min(timeout, 0.5)
        try:
            self.submit(self._shutdown(cleanup)).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self, cleanup: Callable[[], Awaitable[None]] | None) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if cleanup is not None:
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - best effort: never mask the session's own outcome
                pass
