"""The record side of a supervisor: sequence numbers, stamps, and forwarding outputs with
backpressure (written once, used by the trio runner, the asyncio runner and sessions)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from ._flavored import flavored, in_asyncio
from ._task_context import APPENDED, FULL, STALE
from .handle import TaskHandle
from .records import Record, TaskOutput
from .stream import RecordStream

__all__ = ["OfferFn", "PutFn", "RecordOutlet"]

logger = logging.getLogger("taskrunner")
RecordSink = Callable[[Record], None]
#: Forwards one value without waiting: ``APPENDED``, ``FULL`` or ``STALE``.
OfferFn = Callable[[Any], int]
#: Waits for room, then forwards the value (appended even if cancelled while waiting).
PutFn = Callable[[Any, Callable[[], Awaitable[None]] | None], Coroutine[Any, Any, None]]


class _RecordIterator:
    """``async for`` over a supervisor's stream; ends after close once drained.

    Iterating claims the stream: another iterator raises ``StreamBusyError`` at its first
    ``__anext__``, before it takes any record, until this one is exhausted or collected.
    """

    __slots__ = ("__weakref__", "_stream")

    def __init__(self, stream: RecordStream[Record]) -> None:
        self._stream = stream

    def __aiter__(self) -> _RecordIterator:
        return self

    def __anext__(self) -> Awaitable[Record]:
        stream = self._stream
        stream.claim(self)
        if in_asyncio():
            return flavored(self._next)
        return stream.next_record(self)  # trio: no wrapper coroutine per record

    async def _next(self) -> Record:
        return await self._stream.next_record(self)


class RecordOutlet:
    """Base of :class:`taskrunner.Supervisor`: its stream and how records get onto it."""

    _stream: RecordStream[Record]
    _seq: int
    _on_record: RecordSink | None
    _wall_offset: float
    _now: Callable[[], float]
    session_id: str | None

    def emit(self, record: Record) -> None:
        """Append ``record`` to the stream without waiting, then call ``on_record``.

        ``record.seq`` must come from :meth:`next_seq` just before, so the stream stays ordered.
        A failing ``on_record`` is logged and changes nothing else.
        """
        self._stream.put_nowait(record)
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                logger.exception("on_record callback failed on %s", type(record).__name__)

    def next_seq(self) -> int:
        """Reserve the next sequence number of this stream (for records made outside the core)."""
        self._seq += 1
        return self._seq

    def stamp(self, at: float) -> dict[str, Any]:
        """The keyword arguments every record of this stream carries: session id, wall time."""
        return {"session_id": self.session_id, "wall": at + self._wall_offset}

    def offer(self, make: Callable[[int, float], Record]) -> bool:
        """Append ``make(seq, now)`` if the stream has room (True); False when it is full.

        With :meth:`put`, the one implementation of "forward an output with backpressure":
        a writer that got False awaits :meth:`put` (from asyncio through the adapter).
        """
        if not self._stream.has_room():
            return False
        self._seq += 1
        self.emit(make(self._seq, self._now()))
        return True

    async def put(
        self,
        make: Callable[[int, float], Record],
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Wait while the stream is full, then append ``make(seq, now)``.

        If cancelled while waiting, the record is still appended, then the cancellation
        propagates: an output that was yielded is never dropped. ``wait_for_room`` is how the
        caller's flavour waits for :meth:`wait_for_room` (default: trio's own); this coroutine
        runs in the flavour of whoever awaits it.
        """
        try:
            await (self._stream.wait_for_room() if wait_for_room is None else wait_for_room())
        finally:
            self._seq += 1
            self.emit(make(self._seq, self._now()))

    async def wait_for_room(self) -> None:
        """Wait (trio code) until the stream has room for an output."""
        await self._stream.wait_for_room()

    def _output_maker(self, handle: TaskHandle, event: Any) -> Callable[[int, float], Record]:
        def make(seq: int, at: float) -> Record:
            handle.outputs += 1
            return TaskOutput(
                seq,
                at,
                handle.name,
                handle.id,
                event,
                session_id=self.session_id,
                wall=at + self._wall_offset,
            )

        return make

    def offer_output(self, handle: TaskHandle, event: Any) -> int:
        """Forward one output of a generator task without waiting: ``APPENDED``, ``FULL``
        (then await :meth:`put_output`), or ``STALE``: the task's cancel or timeout was
        delivered before it yielded this, so the value is kept for the terminal record (never
        forwarded as stale speech) and the generator must stop there."""
        if handle._cancel_at is not None or handle._scope.cancel_called:
            handle._detail = event
            return STALE
        stream = self._stream
        if len(stream._buf) >= stream._capacity and not stream._closed:  # not has_room(),
            return FULL  # inlined: this runs for every output
        handle.outputs += 1
        self._seq += 1
        at = self._now()
        self.emit(
            TaskOutput(
                self._seq,
                at,
                handle.name,
                handle.id,
                event,
                session_id=self.session_id,
                wall=at + self._wall_offset,
            )
        )
        return APPENDED

    def put_output(
        self,
        handle: TaskHandle,
        event: Any,
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
    ) -> Coroutine[Any, Any, None]:
        """The waiting half of :meth:`offer_output`; see :meth:`put`."""
        return self.put(self._output_maker(handle, event), wait_for_room)

    def record_port(
        self, make_for: Callable[[Any], Callable[[int, float], Record]]
    ) -> tuple[OfferFn, PutFn]:
        """The ``(offer, put)`` pair that forwards each value ``v`` as the record
        ``make_for(v)`` (a session's handler outputs); a task's pair is
        ``(partial(offer_output, handle), partial(put_output, handle))``."""

        def offer(value: Any) -> int:
            return APPENDED if self.offer(make_for(value)) else FULL

        def put(
            value: Any, wait_for_room: Callable[[], Awaitable[None]] | None = None
        ) -> Coroutine[Any, Any, None]:
            return self.put(make_for(value), wait_for_room)

        return offer, put

    async def drive_generator(
        self, agen: AsyncGenerator[Any, Any], offer: OfferFn, put: PutFn
    ) -> None:
        """Iterate the trio async generator ``agen``, forwarding each value through
        ``offer`` / ``put`` with backpressure (the asyncio runner has the same loop in asyncio
        code). A ``STALE`` value stops the generator where it yielded; it is closed in all
        cases, also when cancelled."""
        stream = self._stream
        try:
            async for value in agen:
                status = offer(value)
                if status == APPENDED:
                    await stream.after_put()
                elif status == FULL:
                    await put(value, None)
                else:  # STALE: the task's cancel was delivered before this value
                    break
        finally:
            await agen.aclose()

    def events(self) -> AsyncIterator[Record]:
        """Iterate over the supervisor's records, in order (from trio or asyncio code).

        One reader at a time: a second iterator raises ``StreamBusyError`` at once, before
        taking any record. The iteration ends once the supervisor has closed and every record
        has been read; it can go on after the ``async with`` block has exited.

        When nobody reads: start and end records are kept in memory (they never block), and an
        async-generator task blocks on its output once ``max_buffer`` records are waiting, until
        someone reads or the task is cancelled (its pending output is still appended).
        """
        return _RecordIterator(self._stream)
