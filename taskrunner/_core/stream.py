"""The ordered record stream between a supervisor's tasks and its one reader."""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, Generic, TypeVar

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled

from .errors import StreamBusyError

__all__ = ["RecordStream"]

T = TypeVar("T")

# A put or get that takes the fast path (room in the buffer / a record waiting) does not
# reschedule, which is what makes forwarding cheaper than a memory channel; every
# _YIELD_EVERY-th one still goes through the scheduler so that a task yielding in a tight loop
# cannot starve the others.
_YIELD_EVERY = 64


class RecordStream(Generic[T]):
    """A FIFO of records with one reader, bounded for outputs and unbounded for lifecycle.

    * :meth:`put_nowait` always succeeds: start and end records must never block or fail the
      ``create_task`` or cancel that issues them.
    * outputs are backpressured by the writer: while :meth:`has_room` is false it waits in
      :meth:`wait_for_room`, then appends with :meth:`put_nowait` (also when cancelled while
      waiting: an output a task yielded is never dropped) and, on the fast path, calls
      :meth:`after_put`. The record is made only once it is appended, so ``seq`` stays in
      stream order.
    * :meth:`get` returns records in order; after :meth:`close` it drains what is left and then
      raises ``trio.EndOfChannel``.
    """

    __slots__ = (
        "_buf",
        "_capacity",
        "_closed",
        "_gets",
        "_low_water",
        "_owner",
        "_puts",
        "_reader_lot",
        "_reader_parked",
        "_writer_lot",
        "_writers_parked",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self._buf: deque[T] = deque()
        self._capacity = capacity
        # Blocked writers are woken once the buffer has drained to half, not one per read:
        # woken one by one, a crowd of writers would each append a single record and block
        # again, a park and a reschedule per record (see _wake_writers).
        self._low_water = capacity // 2
        self._closed = False
        self._reader_lot = ParkingLot()
        self._writer_lot = ParkingLot()
        # Whether someone waits in each lot, kept here: a ParkingLot's truth test is a Python
        # call, and these are tested at every record.
        self._reader_parked = False
        self._writers_parked = 0
        self._puts = 0
        self._gets = 0
        self._owner: weakref.ref[Any] | None = None

    def claim(self, reader: Any) -> None:
        """Make ``reader`` the stream's one reader, or raise :class:`StreamBusyError` if
        another reader, still alive and not finished, holds it."""
        owner = self._owner
        if owner is not None:
            current = owner()
            if current is reader:
                return
            if current is not None:
                raise StreamBusyError(
                    "this stream already has a reader (an events() iterator still in use); "
                    "it has one reader at a time: read it from one place and fan out from there"
                )
        self._owner = weakref.ref(reader)

    def release(self, reader: Any) -> None:
        """``reader`` is done (the stream ended): another may claim it."""
        if self._owner is not None and self._owner() is reader:
            self._owner = None

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; buffered records can still be read."""
        return self._closed

    def put_nowait(self, record: T) -> None:
        """Append ``record`` whatever the buffer holds, and wake the reader."""
        self._buf.append(record)
        if self._reader_parked:
            self._reader_parked = False
            self._reader_lot.unpark()

    def _wake_writers(self) -> None:
        # Enough writers to refill the room there is now, each appending until its next
        # scheduling point (every _YIELD_EVERY-th put); a writer woken for nothing just
        # blocks again, and the next read below the low-water mark wakes more.
        room = self._capacity - len(self._buf)
        self._writer_lot.unpark(count=room // _YIELD_EVERY + 1)

    def has_room(self) -> bool:
        """True while fewer than ``capacity`` records wait (or the stream is closed)."""
        return len(self._buf) < self._capacity or self._closed

    async def wait_for_room(self) -> None:
        """Wait until :meth:`has_room`. A checkpoint; cancellable."""
        while not self.has_room():
            self._writers_parked += 1
            try:
                await self._writer_lot.park()
            finally:
                self._writers_parked -= 1

    async def after_put(self) -> None:
        """The checkpoint that follows a fast-path append (see ``_YIELD_EVERY``)."""
        self._puts += 1
        if self._puts % _YIELD_EVERY:
            await checkpoint_if_cancelled()
        else:
            await cancel_shielded_checkpoint()
            await checkpoint_if_cancelled()

    async def get(self) -> T:
        """Return the oldest record, waiting for one; ``trio.EndOfChannel`` once closed and empty.

        Raises :class:`StreamBusyError` if another task is already waiting to read.
        """
        try:
            return await self.next_record(None)
        except StopAsyncIteration:
            raise trio.EndOfChannel from None

    async def next_record(self, reader: Any) -> T:
        """:meth:`get` for an ``async for`` reader: ``StopAsyncIteration`` (and the stream
        released by ``reader``) once closed and drained. One coroutine per record read."""
        buf = self._buf
        if buf:
            record = buf.popleft()
            if self._writers_parked and len(buf) <= self._low_water:
                self._wake_writers()
            self._gets += 1
            try:
                if self._gets % _YIELD_EVERY:
                    await checkpoint_if_cancelled()
                else:
                    await cancel_shielded_checkpoint()
                    await checkpoint_if_cancelled()
            except BaseException:
                # Cancelled after taking it: put it back, so the next read still gets it.
                buf.appendleft(record)
                raise
            return record
        while not buf:
            if self._closed:
                if reader is not None:
                    self.release(reader)
                raise StopAsyncIteration
            if self._reader_lot:
                raise StreamBusyError(
                    "another task is already reading this stream; it has one reader at a time"
                )
            self._reader_parked = True
            try:
                await self._reader_lot.park()
            finally:
                self._reader_parked = False
        record = buf.popleft()
        if self._writers_parked and len(buf) <= self._low_water:
            self._wake_writers()
        return record

    def close(self) -> None:
        """Mark the end of the stream; the reader drains what is buffered, then it ends."""
        self._closed = True
        self._reader_lot.unpark_all()
        self._writer_lot.unpark_all()
