"""A garbage-collection policy for long-running processes with many live tasks."""

from __future__ import annotations

import gc

import attrs

__all__ = ["GcTuning", "tune_gc"]

#: Allocations (minus deallocations) between two young collections: CPython's default is 700.
YOUNG_THRESHOLD = 50_000
#: Young collections between two middle ones (CPython: 10).
MIDDLE_THRESHOLD = 20
#: Middle collections between two full ones (CPython: 10); CPython also waits until the
#: objects promoted since the last full collection are a quarter of the old generation.
OLD_THRESHOLD = 100


@attrs.frozen
class GcTuning:
    """What :func:`tune_gc` did: the thresholds before and after, and how many objects it
    moved to the permanent generation (0 without ``freeze``)."""

    previous_thresholds: tuple[int, int, int]
    thresholds: tuple[int, int, int]
    frozen: int

    def undo(self) -> None:
        """Put the previous thresholds back and make the frozen objects collectable again."""
        gc.set_threshold(*self.previous_thresholds)
        gc.unfreeze()


def tune_gc(
    *,
    freeze: bool = True,
    thresholds: tuple[int, int, int] = (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD),
) -> GcTuning:
    """Set Python's cyclic garbage collector up for a process that keeps many tasks alive.

    Call it once start-up is over (modules imported, long-lived objects made), before the
    sessions start. It changes the whole process, not only taskrunner:

    * with ``freeze`` (default), it collects once and then moves every object tracked so far
      into the permanent generation (``gc.freeze()``): later collections never walk them
      again. Reference counting still frees those objects as usual; only a reference *cycle*
      among them is no longer collected (call it after start-up, not in a loop, and
      ``GcTuning.undo()`` or ``gc.unfreeze()`` reverses it);
    * it raises the collection thresholds (default ``(50_000, 20, 100)`` instead of CPython's
      ``(700, 10, 10)``): young collections happen about 70 times less often, so objects of
      short-lived tasks die of their reference count before a collection looks at them, and
      the full collections that walk every live task (the pauses that delay a barge-in under
      load) become rare. A young collection then looks at up to 50,000 objects (about a
      millisecond). Cyclic garbage waits longer before it is freed: peak memory can grow by
      what 50,000 young objects hold.

    Returns a :class:`GcTuning` with what was in place before. Never raises for valid
    thresholds; ``ValueError`` names a bad one.
    """
    if (
        not isinstance(thresholds, tuple)
        or len(thresholds) != 3
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in thresholds)
    ):
        raise ValueError(
            f"thresholds must be a tuple of three ints >= 1 (young, middle, old), got "
            f"{thresholds!r:.80}"
        )
    previous = gc.get_threshold()
    frozen = 0
    if freeze:
        gc.collect()
        before = gc.get_freeze_count()
        gc.freeze()
        frozen = gc.get_freeze_count() - before
    gc.set_threshold(*thresholds)
    return GcTuning(previous_thresholds=previous, thresholds=thresholds, frozen=frozen)
