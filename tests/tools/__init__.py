"""Tests of the debugger tools (hub, recorder, web view), and their shared fakes.

With this ``__init__`` pytest imports the test modules here as ``tools.<name>``
(``tests/`` itself is put on ``sys.path``), so they can share the record
builders below with ``from tools import RecordFactory, FakeControl``.
"""

from __future__ import annotations

from typing import Any


class RecordFactory:
    """Makes records of one session with increasing ``seq`` and given ``at``."""

    def __init__(self, session_id: str = "s1", *, start: float = 100.0) -> None:
        self.session_id = session_id
        self.seq = 0
        self.at = start
        self.task_ids: dict[str, int] = {}
        self._next_task_id = 0

    def _base(self, type_: str, source: str, task: str | None, at: float | None) -> dict[str, Any]:
        self.seq += 1
        if at is not None:
            self.at = at
        task_id = None
        if task is not None:
            if task not in self.task_ids:
                self._next_task_id += 1
                self.task_ids[task] = self._next_task_id
            task_id = self.task_ids[task]
        return {
            "type": type_,
            "seq": self.seq,
            "at": self.at,
            "source": source,
            "task": task,
            "task_id": task_id,
        }

    def session_started(self, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("SessionStarted", "session", None, at)
        record.update(session_id=self.session_id, agent_id="agent-7", environment="test")
        return record

    def session_ended(self, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("SessionEnded", "session", None, at)
        record.update(session_id=self.session_id)
        return record

    def handler_output(self, text: str, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("HandlerOutput", "handler", None, at)
        record.update(
            event={"type": "TextToSpeechEvent", "text": text, "voice": "nova"},
            input={"type": "UserTextEvent", "text": "what's the weather?"},
        )
        return record

    def handler_failed(self, message: str, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("HandlerFailed", "handler", None, at)
        record.update(
            error={
                "type": "KeyError",
                "message": message,
                "traceback": 'Traceback (most recent call last):\n  File "agent.py", line 3\n'
                f"KeyError: {message}\n",
            },
            input={"type": "UserTextEvent", "text": "book it"},
        )
        return record

    def task_started(
        self,
        task: str,
        *,
        interruptible: bool = True,
        timeout: float | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        self.task_ids.pop(task, None)  # a new task of that name gets a new id
        record = self._base("TaskStarted", "task", task, at)
        record.update(interruptible=interruptible, timeout=timeout, flavor="trio")
        return record

    def task_output(self, task: str, message: str, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("TaskOutput", "task", task, at)
        record.update(event={"type": "LogEvent", "message": message})
        return record

    def task_finished(
        self, task: str, result: Any = None, *, at: float | None = None
    ) -> dict[str, Any]:
        record = self._base("TaskFinished", "task", task, at)
        record.update(result=result)
        return record

    def task_failed(self, task: str, message: str, *, at: float | None = None) -> dict[str, Any]:
        record = self._base("TaskFailed", "task", task, at)
        record.update(
            error={
                "type": "ValueError",
                "message": message,
                "traceback": 'Traceback (most recent call last):\n  File "tasks.py", '
                f"line 12, in run\nValueError: {message}\n",
            }
        )
        return record

    def task_cancelled(
        self, task: str, reason: str = "cancel_task", *, at: float | None = None
    ) -> dict[str, Any]:
        record = self._base("TaskCancelled", "task", task, at)
        record.update(reason=reason)
        return record

    def task_timed_out(
        self, task: str, timeout: float, *, at: float | None = None
    ) -> dict[str, Any]:
        record = self._base("TaskTimedOut", "task", task, at)
        record.update(timeout=timeout)
        return record

    def task_stuck(
        self, task: str, reason: str, since: float, *, at: float | None = None
    ) -> dict[str, Any]:
        record = self._base("TaskStuck", "task", task, at)
        record.update(reason=reason, since=since)
        return record


class FakeControl:
    """A SessionControl that remembers calls and can publish the resulting records."""

    def __init__(self, running: set[str] | None = None) -> None:
        self.running = set(running or ())
        self.cancel_calls: list[str] = []
        self.interrupts = 0
        self.on_cancel: Any = None  # callable(name) run when a running task is cancelled

    def cancel_task(self, name: str) -> bool:
        self.cancel_calls.append(name)
        if name not in self.running:
            return False
        self.running.discard(name)
        if self.on_cancel is not None:
            self.on_cancel(name)
        return True

    def interrupt(self) -> int:
        self.interrupts += 1
        count = len(self.running)
        self.running.clear()
        return count
