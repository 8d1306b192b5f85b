"""Hook calls that stand in for model, judge (or later simulator) calls.

A conftest may implement ``pytest_osi_generate`` or a grader hook; such a call is admitted by
the same limiter as a model call, and its timeout starts at admission, as a model call's does
(waiting for a slot is not the hook's fault). Implementations are called one by one, in
pluggy's order, so an ``async def`` implementation that returns None falls back to the next
one exactly as a plain one does (pluggy's own firstresult would see a coroutine, not None).
Plain implementations run in a daemon thread, so a stuck one neither stalls the loop nor keeps
the process alive after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pytest_osi.errors import JudgeError, ModelCallError
from pytest_osi.text import shown


class HookImpl(Protocol):
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    hookwrapper: bool
    wrapper: bool


class HookCaller(Protocol):
    name: str

    def get_hookimpls(self) -> list[Any]: ...


class Admission(Protocol):
    """The scheduler's limiter, as hook calls see it."""

    async def run(self, priority: Any, fn: Callable[[], Any]) -> Any: ...


def implementations(hook: HookCaller) -> list[Any]:
    """The plain implementations in the order pluggy calls them (last registered first,
    tryfirst/trylast respected: pluggy keeps them sorted and calls them in reverse)."""
    return [impl for impl in reversed(hook.get_hookimpls())
            if not getattr(impl, "hookwrapper", False) and not getattr(impl, "wrapper", False)]


class HookRunner:
    """Calls pipeline hooks within the concurrency limit and the per-call timeout."""

    def __init__(self, limiter: Admission, timeout: float) -> None:
        self._limiter = limiter
        self.timeout = timeout

    async def call(self, hook: HookCaller, priority: Any, **kwargs: Any) -> Any:
        """The first non-None result of ``hook``'s implementations, or None when there is
        none (or no implementation at all: then no slot is taken)."""
        impls = implementations(hook)
        if not impls:
            return None

        async def first_result() -> Any:
            for impl in impls:
                value = await self._call_one(hook, impl, kwargs)
                if value is not None:
                    return value
            return None

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(first_result(), self.timeout)
            except asyncio.TimeoutError:
                raise ModelCallError(f"hook {hook.name} did not return within {self.timeout:g}s") from None

        return await self._limiter.run(priority, bounded)

    async def _call_one(self, hook: HookCaller, impl: Any, kwargs: dict[str, Any]) -> Any:
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            if inspect.iscoroutinefunction(impl.function):
                return await impl.function(**args)
            value = await in_daemon_thread(lambda: impl.function(**args))
            return await value if inspect.isawaitable(value) else value
        except (JudgeError, ModelCallError, asyncio.CancelledError, asyncio.TimeoutError):
            raise
        except BaseException as exc:  # noqa: BLE001 - even SystemExit: a broken hook fails its case
            # (Converted here, inside the task: a SystemExit escaping a task stops the loop.)
            raise ModelCallError(f"hook {hook.name} raised {type(exc).__name__}: {shown(str(exc), 300)}") from None


async def in_daemon_thread(fn: Callable[[], Any]) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def target() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop closed while the hook ran: nobody is waiting any more

    threading.Thread(target=target, name="pytest-osi-hook", daemon=True).start()
    return await future
