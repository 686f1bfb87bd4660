"""Real receivers on 127.0.0.1 for the alert tests: the webhook receiver the demo uses too
(onchain.alerts.receiver: records every request, checks the signature, answers with a status
the test chooses), and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from email import message_from_bytes
from typing import Any

from onchain.alerts.receiver import Delivery, Receiver

__all__ = ["Delivery", "Mailbox", "Receiver"]


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        box = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                box.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        with socket.socket() as probe:  # a free port: aiosmtpd's readiness check needs one
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()
