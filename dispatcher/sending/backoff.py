"""When to try again: exponential, bounded and jittered, for email and for fax alike."""

from __future__ import annotations

import datetime as dt

from tenacity import RetryCallState, wait_exponential, wait_random

from dispatcher.settings import Settings


class Backoff:
    """``initial × factorⁿ⁻¹`` seconds after attempt n, at most ``cap``, plus up to ``jitter``
    seconds so letters that failed together do not retry together; None once ``attempts`` have
    been made."""

    def __init__(
        self, initial: float, cap: float, attempts: int, *, factor: float = 2.0, jitter: float = 0.0
    ) -> None:
        self.attempts = attempts
        self._wait = wait_exponential(multiplier=initial, exp_base=factor, max=cap) + wait_random(0, jitter)

    def seconds(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))

    def after(self, attempt: int, now: dt.datetime) -> dt.datetime | None:
        """The time of the next attempt after ``attempt`` attempts, or None: give up."""
        if attempt >= self.attempts:
            return None
        return now + dt.timedelta(seconds=self.seconds(attempt))


def email_backoff(settings: Settings) -> Backoff:
    """An email's transient failures: ``retry_initial`` doubling up to ``retry_max``, jittered."""
    initial = settings.retry_initial
    return Backoff(initial, settings.retry_max, settings.max_attempts, jitter=initial)


def fax_backoff(settings: Settings) -> Backoff:
    """Busy and no answer: 20 min, ×1.9 each time, at most 4 h, up to 5 min of jitter (defaults)."""
    initial = settings.fax_retry_initial
    return Backoff(initial, settings.fax_retry_max, settings.fax_max_attempts, factor=1.9, jitter=initial / 4)
