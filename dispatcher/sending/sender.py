"""Sending one claimed letter: render it, hand it to its channel, turn what happened into an
attempt result (sent, retry with backoff, failed) or a hand-back when nothing was attempted."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial

from dispatcher.channels import Channel, Envelope, SendError, Unavailable
from dispatcher.letters.render import RenderError
from dispatcher.models import AttemptResult, Claim, Outcome
from dispatcher.sending.backoff import email_backoff
from dispatcher.sending.catalogue import Catalogue
from dispatcher.sending.feeder import Queued
from dispatcher.sending.leases import LeaseKeeper
from dispatcher.sending.results import ResultWriter
from dispatcher.settings import Settings
from dispatcher.store.reasons import gave_up

log = logging.getLogger("dispatcher")


class Sender:
    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        channels: Mapping[str, Channel],
        results: ResultWriter,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.catalogue = catalogue
        self.channels = channels
        self.results = results
        self.clock = clock
        self.revoked: frozenset[str] = frozenset()  # supporters who withdrew consent just now
        self.backoff = email_backoff(settings)
        lease = dt.timedelta(seconds=settings.lease_seconds)
        self.leases = LeaseKeeper(results.store, results.worker_id, lease, clock, results.uncommitted)

    async def send(self, item: Queued) -> None:
        claim = item.claim
        opened = self.catalogue.open.get(claim.action_id)
        now = self.clock()
        # Paused, closed, held or past its deadline since the claim, its supporter withdrew
        # consent, or it waited too long to keep to the pacing it was claimed under: not an
        # attempt, back to the queue (a withdrawn letter is cancelled there already).
        if opened is None or now >= opened[1] or item.late() or claim.signer.email in self.revoked:
            self.results.release(claim.delivery_id)
            return
        action = opened[0]
        target = action.target(claim.target_id)
        renderer = self.catalogue.renderer
        language = renderer.language_for(action, target)
        try:
            if language is None:
                raise RenderError(action.id, target.id, None, "no template for this target")
            letter = renderer.render(action, target, language, claim.signer, now.date(), opened[1])
        except Exception as exc:
            # Whatever a template does, it holds its own action and never stops the others.
            problem = (
                exc
                if isinstance(exc, RenderError)
                else RenderError(action.id, target.id, language, repr(exc))
            )
            self.catalogue.hold(action.id, problem)
            self.results.release(claim.delivery_id)
            return
        # No attempt may start after the deadline, however long rendering (a fax PDF) takes.
        deadline_by = time.monotonic() + (opened[1] - now).total_seconds()
        envelope = Envelope(
            action,
            target,
            letter,
            claim.signer,
            claim.delivery_id,
            now,
            item.start_by,
            claim.attempt,
            deadline_by,
        )
        try:
            with self.leases.attempt(claim.delivery_id):
                result = await self._attempt(claim, envelope, language)
            self.results.add(result)
        except Unavailable:
            # The circuit is open, or the letter waited too long for a connection: not attempted.
            self.results.release(claim.delivery_id)

    async def _attempt(self, claim: Claim, envelope: Envelope, language: str) -> AttemptResult:
        result = partial(
            AttemptResult,
            delivery_id=claim.delivery_id,
            action_id=claim.action_id,
            target_id=claim.target_id,
            channel=claim.channel,
            started_at=envelope.now,
            language=language,
        )
        try:
            reply = await self.channels[claim.channel].send(envelope)
        except Unavailable:
            raise
        except SendError as exc:
            return self._retry_or_fail(claim, result, exc)
        except Exception as exc:
            # A bug or an unforeseen error in a channel must cost one attempt, not the loop.
            log.exception("delivery %d: unexpected error", claim.delivery_id)
            return self._retry_or_fail(
                claim, result, SendError(f"{type(exc).__name__}: {exc}", transient=True)
            )
        # A submission is not an outcome yet: the provider's word comes later (Store.resolve).
        outcome = Outcome.SUBMITTED if reply.submission else Outcome.SENT
        return result(
            finished_at=self.clock(),
            outcome=outcome,
            code=reply.code,
            detail=reply.detail,
            submission=reply.submission,
        )

    def _retry_or_fail(
        self, claim: Claim, result: Callable[..., AttemptResult], exc: SendError
    ) -> AttemptResult:
        """A retry with backoff while attempts remain; otherwise (or if permanent) a failure."""
        finished = self.clock()
        later = self.backoff.after(claim.attempt, finished) if exc.transient else None
        if later is not None:
            if exc.retry_after is not None:  # the other side said when (429 Retry-After)
                later = finished + dt.timedelta(seconds=exc.retry_after)
            return result(
                finished_at=finished,
                outcome=Outcome.RETRY,
                code=exc.code,
                detail=exc.detail,
                next_attempt_at=later,
            )
        why = gave_up(claim.attempt, exc.detail) if exc.transient else exc.detail
        return result(finished_at=finished, outcome=Outcome.FAILED, code=exc.code, detail=why)
