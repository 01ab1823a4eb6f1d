"""Email addresses and fax numbers in one normal form, for targets, supporters and settings alike."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email


def normalise_email(value: str) -> str:
    """Validate an address (syntax only: no DNS lookups) and return its ASCII normal form.

    Internationalised local parts are refused: they need SMTPUTF8, which many officials' servers
    lack, and a letter that cannot be delivered is worse than an import error.
    """
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
        return checked.ascii_email or checked.normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid email address: {exc}") from exc


def stored_email(email: str) -> str:
    """The address as supporters' addresses are stored (the importer's ``normalise_email``,
    lower case), so staff find a person however they type it; as given if it is no address."""
    try:
        return normalise_email(email.strip()).lower()
    except ValueError:
        return email.strip().lower()


def normalise_fax(value: str, region: str | None) -> str:
    """A fax number in E.164 (``+861062381025``); national forms need the target's country."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{value!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
