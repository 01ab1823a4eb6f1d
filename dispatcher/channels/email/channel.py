"""The email channel: a letter built as a message, with the action's copies, handed to a transport."""

from __future__ import annotations

from dispatcher.actions.model import Action, Target
from dispatcher.channels.base import Channel, Envelope, Reply
from dispatcher.channels.email import message
from dispatcher.channels.email.transport import MailTransport


class EmailChannel(Channel):
    name = "email"

    def __init__(self, transport: MailTransport, builder: message.MessageBuilder) -> None:
        self.transport = transport
        self.builder = builder

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    @staticmethod
    def copies(action: Action, target: Target) -> list[Target]:
        return [c for c in action.copies(EmailChannel.name) if c.id != target.id]

    def message_id(self, delivery_id: int) -> str | None:
        return message.message_id(self.builder.secret, delivery_id, self.builder.domain)

    def pacing_keys(self, action: Action, target: Target) -> tuple[str, ...]:
        return tuple(f"email:{t.email}" for t in (target, *self.copies(action, target)))

    @property
    def concurrency(self) -> int:
        return self.transport.concurrency

    def ready_in(self) -> float:
        return self.transport.ready_in()

    @property
    def trouble(self) -> str | None:
        return self.transport.trouble

    def drain(self) -> None:
        self.transport.drain()

    def longest_attempt(self, action: Action, target: Target) -> float:
        return self.transport.longest_attempt(1 + len(self.copies(action, target)))

    async def send(self, envelope: Envelope) -> Reply:
        mail = self.builder.build(envelope, self.copies(envelope.action, envelope.target))
        return await self.transport.send(mail, min(envelope.start_by, envelope.deadline_by))
