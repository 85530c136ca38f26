"""How taskrunner prepares a trio-asyncio loop, and how its own loop shares the trio thread.

Imported by ``aio`` only, after trio-asyncio (see there why that import is lazy).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from typing import Any

import sniffio
import trio

from .._core._checks import safe_repr

try:
    from trio_asyncio._base import TrioAsyncioExit as _LoopExit  # how loop.stop() ends it
except ImportError:  # pragma: no cover - internals moved: let every SystemExit through
    _LoopExit = SystemExit

logger = logging.getLogger("taskrunner")


def _exception_handler(loop: Any, context: dict[str, Any]) -> None:
    """Log what asyncio would have logged, on the taskrunner logger; never raise.

    trio-asyncio's default handler re-raises into its loop's system task, which would end
    every session of the process (a fire-and-forget task that failed, a future whose
    exception was never retrieved, an unclosed aiohttp session...). Plain asyncio only logs.
    """
    try:
        message = str(context.get("message") or "Unhandled exception in asyncio code")
        details = []
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            details.append(f"{key}: {safe_repr(context[key], 300)}")
        exc = context.get("exception")
        logger.error(
            "asyncio: %s%s",
            message,
            "".join("\n  " + d for d in details),
            exc_info=exc if isinstance(exc, BaseException) else None,
        )
    except Exception:  # a broken __repr__ must not break the loop either
        pass


def _abandoning_run_in_executor(loop: Any) -> Callable[..., Any]:
    """``loop.run_in_executor`` whose work is abandoned when the awaiting task is cancelled.

    trio-asyncio runs executor work in a trio thread that cannot be cancelled, so a cancel
    (an interruption, a timeout) waited for the thread and was lost when it returned. Here the
    waiting side is cancelled at once; the thread finishes on its own and its late result is
    dropped with a debug log line (a thread cannot be killed).
    """

    def run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        if executor is not None:
            # An explicit concurrent.futures executor: asyncio's own wrapping abandons it
            # on cancel too.
            return asyncio.wrap_future(executor.submit(func, *args), loop=loop)
        name = getattr(func, "__qualname__", None) or safe_repr(func, 80)

        def call() -> Any:
            result = func(*args)
            return result

        async def in_thread() -> Any:
            try:
                return await trio.to_thread.run_sync(call, abandon_on_cancel=True)
            except trio.Cancelled:
                logger.debug("executor call %s abandoned on cancel; its result is dropped", name)
                raise

        return loop.trio_as_future(in_thread)

    return run_in_executor


def prepare(loop: Any) -> None:
    """Make ``loop`` (a trio-asyncio loop, taskrunner's own or one a caller adopted) safe to
    run supervised asyncio code on: errors logged, executor work abandoned on cancel, Ctrl-C
    kept out of its machinery. Idempotent."""
    if getattr(loop, "_taskrunner_prepared", False):
        return
    _protect_loop_from_ctrl_c(loop)
    loop.set_exception_handler(_exception_handler)
    loop.run_in_executor = _abandoning_run_in_executor(loop)
    loop._taskrunner_prepared = True


def _protect_loop_from_ctrl_c(loop: Any) -> None:
    """Keep a Ctrl-C (a signal's KeyboardInterrupt) out of trio-asyncio's loop machinery.

    trio raises KeyboardInterrupt wherever the main thread is, unless the code there is
    KI-protected, in which case the run's main task gets it at its next checkpoint. trio-
    asyncio's loop task (``_main_loop``, and every asyncio callback it runs) is not: a
    Ctrl-C landing there ends the loop with asyncio tasks still waited for, and the run
    hangs for ever (trio-asyncio issues 88 and 118). Marking ``_main_loop`` protected (for
    every trio-asyncio loop of the process: trio keys the mark on the code object) sends it
    to the main task instead, and the run ends through cancellation as anywhere else. The
    code of a supervised asyncio task stays interruptible: ``_guarded`` lifts the mark.
    """
    main_loop = getattr(type(loop), "_main_loop", None)
    if main_loop is not None and hasattr(main_loop, "__code__"):
        trio.lowlevel.enable_ki_protection(main_loop)


def survive_escaping_interrupt(exc: KeyboardInterrupt | SystemExit, loop: Any) -> None:
    """A KeyboardInterrupt or SystemExit raised out of an asyncio callback, reported.

    asyncio lets these through its loop; in trio-asyncio that ends the loop with futures
    still awaited, and the run hangs. When a task raised it, asyncio has already set it on
    the task, so whoever awaits the task gets it (a supervised task re-raises it on the trio
    side, which ends the run as in trio); the loop goes on, and the escape is logged.
    trio-asyncio's own ``TrioAsyncioExit`` (how ``loop.stop()`` ends the loop) is re-raised.
    """
    if isinstance(exc, _LoopExit):
        raise exc
    loop.call_exception_handler(
        {
            "message": f"{type(exc).__name__} escaped an asyncio callback; the loop goes on",
            "exception": exc,
        }
    )


#: How many ready asyncio callbacks taskrunner's loop may run per trio scheduling round at
#: least (all of those waiting when the round began, if there are more), time allowing.
CALLBACKS_PER_ROUND = 64

#: The least time taskrunner's loop runs asyncio callbacks in a row before it lets the rest of
#: the trio run go on (more when the rest took more: see ``run_callbacks_in_rounds``).
ROUND_SLICE_S = 0.002


def run_callbacks_in_rounds(loop: Any) -> bool:
    """Have ``loop`` (taskrunner's own trio-asyncio loop) run ready asyncio callbacks in
    batches that share the trio thread fairly; False (nothing changed) on an unknown
    trio-asyncio.

    trio-asyncio runs one asyncio callback per trio scheduling round (each goes through a
    trio channel receive, a checkpoint). With thousands of asyncio tasks the callbacks queue
    up behind the rounds, and a cancel (a barge-in) reaches its asyncio task only after all of
    them. Here each round the loop task runs, in trio-asyncio's order, the callbacks that were
    ready when the round began (and timers already due; at least ``CALLBACKS_PER_ROUND``),
    as asyncio runs every ready callback per iteration, but only for a slice of time: it
    yields to trio once it has run for the larger of ``ROUND_SLICE_S`` and the CPU time the
    rest of the trio run took in the round it waited for. So:

    - trio's own tasks (the supervisors, a server's I/O, timeouts, cancellations) wait about
      a slice for the loop, not for every ready callback: with a hundred agents each
      spending CPU in 1 ms pieces, each hop of a session's answer waited about 100 ms, now
      about 2;
    - when both have work, asyncio code still gets at least as much of the thread as the rest
      of the trio run, so CPU-heavy trio-flavoured tasks cannot starve asyncio-flavoured
      ones (a loop that had nothing to do gets the least slice: it is owed nothing).

    Callbacks left over run first next round; their order never changes.
    """
    try:
        from trio_asyncio._handles import AsyncHandle
    except ImportError:  # pragma: no cover - a trio-asyncio without this module
        return False
    needed = ("_q_recv", "_timers", "_stopped", "_nursery", "_main_loop_one", "time")
    if not all(hasattr(loop, name) for name in needed):
        return False  # pragma: no cover - internals changed: keep trio-asyncio's own loop
    one = type(loop)._main_loop_one
    sniffio_state = sniffio.thread_local
    cpu_time, clock = time.thread_time, time.perf_counter
    statistics, timers = loop._q_recv.statistics, loop._timers

    async def main_loop_one(no_wait: bool = False) -> None:
        # Work already waiting means trio-asyncio's receive below only yields one round;
        # the CPU the rest of the run used meanwhile is the share owed to asyncio code.
        owed = statistics().current_buffer_used > 0
        yielded = cpu_time()
        try:
            await one(loop, no_wait)  # trio-asyncio's step: waits for work, runs one callback
        except (KeyboardInterrupt, SystemExit) as exc:
            survive_escaping_interrupt(exc, loop)
        if no_wait:
            return
        others = cpu_time() - yielded if owed else 0.0
        until = clock() + max(ROUND_SLICE_S, others)
        receive = loop._q_recv.receive_nowait
        # Every callback that was ready when the round began (and at least a batch), time
        # allowing. Callbacks those add wait for the next round.
        ready = statistics().current_buffer_used
        for _ in range(max(CALLBACKS_PER_ROUND - 1, ready)):
            if loop._stopped.is_set() or clock() >= until:
                return
            if timers and timers[0]._when <= loop.time():
                obj = heapq.heappop(timers)
            else:
                try:
                    obj = receive()
                except trio.WouldBlock:
                    return
                if isinstance(obj, asyncio.TimerHandle):
                    heapq.heappush(timers, obj)
                    continue
            if isinstance(obj, AsyncHandle):
                obj._context.run(loop._nursery.start_soon, obj._run, name=obj._callback)
                await obj._started.wait()
            elif not obj._cancelled:
                previous, sniffio_state.name = sniffio_state.name, "asyncio"
                try:
                    obj._run()
                except (KeyboardInterrupt, SystemExit) as exc:
                    survive_escaping_interrupt(exc, loop)
                finally:
                    sniffio_state.name = previous

    loop._main_loop_one = main_loop_one
    return True
