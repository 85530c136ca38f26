"""Telling people that an A/B test concluded: the Notifier protocol and an SMTP notifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import trio

__all__ = ["Notifier", "SMTPNotifier"]


@runtime_checkable
class Notifier(Protocol):
    """Sends the message that a test concluded to the test's ``notify`` addresses.

    Called once per test, by the process whose session concluded it, from the trio thread.
    An exception is logged and reported in the ``TestConcluded`` record; it does not affect
    the session.
    """

    async def notify(self, addresses: Sequence[str], subject: str, body: str) -> None:
        """Deliver ``subject`` and ``body`` to every address."""


class SMTPNotifier:
    """A :class:`Notifier` that sends one plain-text email through an SMTP server
    (standard library ``smtplib``, run in a worker thread).

    ``starttls=True`` upgrades the connection before sending; ``username``/``password`` log
    in. ``timeout`` (seconds) bounds each socket operation. Cancelling ``notify`` waits for
    the send under way to finish.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        sender: str = "taskrunner@localhost",
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"SMTPNotifier host must be a non-empty str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"SMTPNotifier port must be an int in 1..65535, got {port!r}")
        if not isinstance(sender, str) or "@" not in sender:
            raise ValueError(f"SMTPNotifier sender must be an email address, got {sender!r}")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<SMTPNotifier {self.host}:{self.port} from {self.sender}>"

    def _send(self, addresses: Sequence[str], subject: str, body: str) -> None:
        import email.message  # here, so that `import taskrunner` stays cheap
        import smtplib

        msg = email.message.EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(addresses)
        msg["Subject"] = subject
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username is not None:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)

    async def notify(self, addresses: Sequence[str], subject: str, body: str) -> None:
        """Send one email to ``addresses``; raises ``smtplib.SMTPException`` or ``OSError``."""
        await trio.to_thread.run_sync(self._send, list(addresses), subject, body)
