"""A proof before launch: every letter an action would send, to a staff address instead.

Each target's letter on each of its channels, in the language the dispatcher would choose for
it, in each of that language's variants, rendered and built by the same code as a real send (an
email's bytes come from the email channel's ``MessageBuilder``; a fax is its PDF, attached to an
email), signed by a fictional sample supporter. What changes is only what routes it: the SMTP
recipients are the staff address alone, the target's To and Cc move to ``X-Proof-To`` and
``X-Proof-Cc`` (a reply-all from a staff mailbox must not reach an official), the Message-ID is
new, and the subject starts with ``[PROOF]`` beside an ``X-Dispatcher-Proof`` header. Nothing
is recorded as a delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path

from dispatcher import capabilities
from dispatcher.actions.model import Action, Target
from dispatcher.actions.planner import effective
from dispatcher.addresses import normalise_email
from dispatcher.channels import IMPLEMENTED, Envelope, SendError, Unavailable
from dispatcher.channels.email import EmailChannel, MessageBuilder, OutgoingMail
from dispatcher.letters import faxpdf
from dispatcher.letters.render import SAMPLE_SIGNER, Letter, Renderer, RenderError
from dispatcher.mime import mailbox_header, unstructured
from dispatcher.people.notices import transport_for
from dispatcher.settings import Settings
from dispatcher.store import Store
from dispatcher.store.accounts import AuditEntry

PREFIX = "[PROOF]"
HEADER = "X-Dispatcher-Proof"
# Fictional (example.net, never a real supporter), with words, so that staff see where a
# supporter's own paragraph lands in the letter.
PROOF_SIGNER = dataclasses.replace(
    SAMPLE_SIGNER,
    words="[Sample: a supporter's own words for this action, when they give some, appear here.]",
)


def counted(letters: int) -> str:
    return f"{letters} letter" if letters == 1 else f"{letters} letters"


class ProofError(Exception):
    """Why no proof was sent: said to staff as it is (no supporter data in it)."""


@dataclass(frozen=True)
class ProofLetter:
    target: Target
    channel: str
    letter: Letter  # its variant too


def recipient(to: str, actions: Iterable[Action]) -> str:
    """The staff address in its normal form; refused if any action's target has it, so that a
    proof can never be sent to an official (nor a typo in a form make one)."""
    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise ProofError(str(exc)) from None
    for action in actions:
        for target in action.targets:
            if target.email and target.email.lower() == address.lower():
                raise ProofError(
                    f"{address} is the address of target {target.id} of {action.id}: a proof goes to staff"
                )
    return address


def letters(action: Action, renderer: Renderer, today: dt.date, deadline: dt.datetime) -> list[ProofLetter]:
    """Every letter of the action, each as its target gets it, in each variant; all or none (a
    proof that left out a letter that fails would look complete)."""
    found, problems = [], []
    for target_id, channel in action.claim_pairs(IMPLEMENTED):
        target = action.target(target_id)
        language = renderer.language_for(action, target)
        if language is None:
            problems.append(f"{action.id} × {target.id}: no template in any of its languages")
            continue
        for variant in renderer.variants(action.templates, language):
            try:
                letter = renderer.render(action, target, language, PROOF_SIGNER, today, deadline, variant)
            except RenderError as exc:
                problems.append(f"{exc} (variant {variant})")
                continue
            found.append(ProofLetter(target, channel, letter))
    if problems:
        raise ProofError("no proof sent; these letters do not render: " + "; ".join(problems))
    if not found:
        raise ProofError(f"no proof sent: {action.id} sends no letter (none of its targets has a channel)")
    return found


def _label(action: Action, proof: ProofLetter) -> str:
    return (
        f"action={action.id}; target={proof.target.id}; channel={proof.channel}; "
        f"language={proof.letter.language}; variant={proof.letter.variant}"
    )


def _fields(head: bytes) -> list[bytes]:
    """A header block as its fields, each with its folded continuation lines."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields


def _readdressed(mail: OutgoingMail, to: str, subject: str, label: str, domain: str) -> OutgoingMail:
    head, _, body = mail.data.partition(b"\r\n\r\n")
    kept: list[str] = []
    for field in _fields(head):
        name, _, value = field.decode("ascii").partition(":")
        lower = name.lower()
        if lower in ("to", "cc"):
            kept.append(f"X-Proof-{name}:{value}\r\n")  # as the target would see it, not routed
        elif lower == "message-id":
            kept.append(f"Message-ID: <proof.{secrets.token_hex(12)}@{domain}>\r\n")
        elif lower == "subject":
            kept.append(unstructured("Subject", f"{PREFIX} {subject}"))
            kept.append(mailbox_header("To", [("", to)]))
            kept.append(f"{HEADER}: {label}\r\n")
        else:
            kept.append(field.decode("ascii") + "\r\n")
    data = "".join(kept).encode("ascii") + b"\r\n" + body
    return OutgoingMail(sender=mail.sender, recipients=(to,), data=data)


def email_proof(
    action: Action, proof: ProofLetter, to: str, builder: MessageBuilder, now: dt.datetime
) -> OutgoingMail:
    envelope = Envelope(action, proof.target, proof.letter, PROOF_SIGNER, 0, now)
    mail = builder.build(envelope, EmailChannel.copies(action, proof.target))
    return _readdressed(mail, to, proof.letter.subject, _label(action, proof), builder.domain)


def fax_proof(
    action: Action, proof: ProofLetter, to: str, sender: str, now: dt.datetime, font: Path
) -> OutgoingMail:
    """The fax as its PDF, attached to an email that says where it would have gone."""
    target, letter = proof.target, proof.letter
    head = faxpdf.letterhead(action, target, PROOF_SIGNER, letter.language, now.date())
    document = faxpdf.letter_pdf(letter, head, font)
    org_name, org_address = parseaddr(sender)
    message = EmailMessage()
    message["Message-ID"] = f"<proof.{secrets.token_hex(12)}@{org_address.rpartition('@')[2]}>"
    message["Date"] = format_datetime(now.astimezone(dt.UTC).replace(microsecond=0))
    message["From"] = formataddr((org_name, org_address))
    message["To"] = to
    message["Subject"] = f"{PREFIX} {letter.subject}"
    message["X-Proof-Fax-To"] = f"{head.to_name} {head.to_fax}"
    message[HEADER] = _label(action, proof)
    message.set_content(
        f"Proof of the fax to {head.to_name} at {head.to_fax}: {document.pages} page(s), {head.paper}, "
        f"{letter.language}, attached as the target's fax machine would print it.\n"
        "Nothing was sent to the target.\n"
    )
    name = f"proof-{action.id}-{target.id}-{letter.language}-{proof.letter.variant}.pdf"
    message.add_attachment(document.data, maintype="application", subtype="pdf", filename=name)
    return OutgoingMail(sender=org_address, recipients=(to,), data=message.as_bytes(policy=SMTP))


def build(settings: Settings, store: Store, action: Action, to: str, now: dt.datetime) -> list[OutgoingMail]:
    """The proof's emails (renders and writes PDFs: call it off the event loop)."""
    deadline = effective(action, store.action_states().get(action.id), now).deadline
    found = letters(action, Renderer(settings.templates_dir), now.date(), deadline)
    builder = MessageBuilder(settings.sender, store.instance_secret())
    font = None
    if any(capabilities.of(p.channel).pdf for p in found):
        try:
            font = faxpdf.find_font(settings.fax_font)
        except faxpdf.FontMissing as exc:
            raise ProofError(f"no proof sent: {exc}") from None
    return [
        fax_proof(action, p, to, settings.sender, now, font)
        if font is not None and capabilities.of(p.channel).pdf
        else email_proof(action, p, to, builder, now)
        for p in found
    ]


async def send(
    settings: Settings, store: Store, action: Action, to: str, by: str, where: str, now: dt.datetime
) -> int:
    """Build the proof and send it through the letters' transport (SMTP when configured, else the
    local outbox); audited with what went, even when the mail server stopped it halfway."""
    mails = await asyncio.to_thread(build, settings, store, action, to, now)
    transport = await asyncio.to_thread(transport_for, settings)
    await transport.start()
    sent = 0
    try:
        for mail in mails:
            await transport.send(mail)
            sent += 1
    except (SendError, Unavailable) as exc:
        raise ProofError(
            f"the mail server refused the proof after {sent} of {counted(len(mails))}: {exc}"
        ) from exc
    finally:
        await transport.close()
        if sent:
            rest = "" if sent == len(mails) else f" (of {len(mails)}: the mail server refused the rest)"
            entry = AuditEntry(now, by, where, "proof", action.id, f"{counted(sent)} to {to}{rest}")
            await asyncio.to_thread(store.accounts.audit, entry)
    return sent
