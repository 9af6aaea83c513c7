"""The `web` transport of the deliveries queue: the secretariat's answer to a web applicant.

Sending stores the answer in the applicant's conversation (so it waits for the next visit)
and pushes it to every open page of that session over server-sent events. The stored
message carries the delivery's idempotency key: a retry after a crash between storing and
recording the outcome finds it and does not show the answer twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.channels.web import transcript
from bot.deliveries.model import Dead, Delivery, Outcome, Sent

if TYPE_CHECKING:
    from bot.channels.web.server import WebChannel

NAME = "web"


class WebTransport:
    """Delivers `web` deliveries into the web channel's transcripts and open pages."""

    name = NAME
    # Storing a row takes no network: the worker's lease needs little per delivery.
    timeout = 5.0

    def __init__(self, channel: WebChannel) -> None:
        self.channel = channel

    async def send(self, delivery: Delivery) -> Outcome:
        """Store the answer for the session and push it; never raises for a delivery."""
        text = delivery.payload
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not delivery.recipient or not text:
            return Dead("no web session or no text (erased?)")
        ref, lang = transcript.enquiry_label(self.channel.db, delivery.enquiry_id)
        message = {
            "title": self.channel.conversation.relay_title(lang, ref),
            "parts": [{"text": text}],
            "key": delivery.idempotency_key,
        }
        stored = transcript.append_once(
            self.channel.db, delivery.recipient, message, self.channel.app.clock()
        )
        if stored is not None:
            self.channel.streams.push(delivery.recipient, [stored])
            return Sent(ref=str(stored["id"]))
        return Sent(ref=None)

    async def idle(self) -> None:
        """Nothing to release: no connection is held."""
