"""The email channel: a letter as a MIME message, over pooled SMTP or into a local Maildir.

``message`` builds the bytes, ``transport`` is what carries them (``smtp``: a connection pool
with a probe; ``maildir``: local files), ``channel`` ties them to the Channel interface. Header
text itself is ``dispatcher.mime``'s: the store's redaction reads it too, below the channels.
"""

from __future__ import annotations

from dispatcher.channels.email.channel import EmailChannel
from dispatcher.channels.email.maildir import MaildirTransport
from dispatcher.channels.email.message import MessageBuilder, encode_body, message_id
from dispatcher.channels.email.smtp import PROBE_FIRST, PROBE_MAX, SmtpTransport, smtp_path
from dispatcher.channels.email.transport import MailTransport, OutgoingMail

__all__ = [
    "PROBE_FIRST",
    "PROBE_MAX",
    "EmailChannel",
    "MailTransport",
    "MaildirTransport",
    "MessageBuilder",
    "OutgoingMail",
    "SmtpTransport",
    "encode_body",
    "message_id",
    "smtp_path",
]
