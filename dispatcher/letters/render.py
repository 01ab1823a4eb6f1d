"""Letters from templates: ``templates/<set>/<language>.j2`` (and its variants, ``<language>.b.j2``
…: ``dispatcher.letters.variants``) in a sandboxed Jinja2 environment.

A template defines a ``subject`` block and a ``body`` block. Templates are trusted less than code
(staff edit them), hence the bounded sandbox of ``dispatcher.sandbox``, and StrictUndefined so
that a typo is an error at ``dispatcher check`` time instead of a blank in a letter already sent.

Whatever a template does, rendering ends in a ``Letter`` or a ``RenderError`` naming the template
file and line: never another exception, since ``check``, ``actions`` and ``run`` must survive any
template.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError, pass_context
from jinja2.exceptions import UndefinedError
from jinja2.runtime import Context
from jinja2.utils import missing

from dispatcher.actions.model import Action, Target, deadline_instant
from dispatcher.language import parse_language
from dispatcher.letters import variants
from dispatcher.letters.sandbox import (
    CURRENT_BUDGET,
    MAX_LETTER,
    Budget,
    LetterEnvironment,
    LimitExceeded,
    collect,
    template_view,
)
from dispatcher.models import CITY_LIMIT, NAME_LIMIT, WORDS_LIMIT, Signer

SAMPLE_SIGNER = Signer(
    name="Zoë Sample-Signer 林小文", email="sample@example.net", city="Zürich", country="CH", language="de"
)
# The longest signer the importer lets in: a template may be fine with a short name and run away
# with a long one (a loop over the name's letters), and ``check`` should find that, not a send.
LONGEST_SIGNER = Signer(
    name=("Zoë Sample-Signer 林小文 " * NAME_LIMIT)[:NAME_LIMIT],
    email="sample@example.net",
    city=("Zürich-Altstetten 臺北市 " * CITY_LIMIT)[:CITY_LIMIT],
    country="CH",
    language="de",
    words=("In my own words, 用我自己的话. " * WORDS_LIMIT)[:WORDS_LIMIT],
)

# Supporters may give their own words for any action (the opt-in page, the API): a template that
# does not place them would drop what the page promised to send, so ``check`` holds its action.
WORDS_SIGNER = dataclasses.replace(SAMPLE_SIGNER, words="These are my own words: free them. 这是我的话。")
WORDS_MISSING = (
    "the template does not place supporter.words, so the words supporters give for this action "
    "would be left out of their letters: add {% if supporter.words %}{{ supporter.words }}{% endif %} "
    "to its body"
)


def _places_words(letter: Letter) -> bool:
    """Whether the sample words are in the letter, however the template spaced or wrapped them."""
    text = " ".join(f"{letter.subject} {letter.body}".split())
    return " ".join(WORDS_SIGNER.words.split()) in text


def _in(language: str, variant: str) -> str:
    """For a problem that names no file: the variant's, when it is not the language's first."""
    return "" if variant == variants.FIRST else f"{variants.file_name(language, variant)}: "


class RenderError(Exception):
    def __init__(self, action_id: str, target_id: str, language: str | None, problem: str) -> None:
        super().__init__(f"{action_id} × {target_id} × {language or '-'}: {problem}")
        self.action_id = action_id
        self.target_id = target_id
        self.language = language
        self.problem = problem


@dataclass(frozen=True)
class Letter:
    subject: str
    body: str
    language: str
    variant: str = variants.FIRST


@template_view
@dataclass(frozen=True)
class ActionView:
    id: str
    title: str
    reference: str
    deadline: dt.date | dt.datetime


@template_view
@dataclass(frozen=True)
class TargetView:
    name: str
    title: str
    salutation: str
    address: str


@template_view
@dataclass(frozen=True)
class SupporterView:
    name: str
    city: str
    country: str
    country_name: str
    words: str  # their own paragraph for this action: plain text, never template code


# The names a template sees, for messages in its own terms rather than in the code's classes.
VARIABLES = ("action", "target", "supporter", "language", "today")
VIEWS: dict[type, str] = {ActionView: "action", TargetView: "target", SupporterView: "supporter"}


def _unknown(name: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"unknown variable {prefix}{name}{hint}"


class LetterUndefined(StrictUndefined):
    """StrictUndefined whose error says ``unknown variable action.titel (did you mean
    action.title?)`` instead of naming the internal class of ``action``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, str(self._undefined_name)
        if self._undefined_hint or not isinstance(self._undefined_name, str):
            return str(super()._undefined_message)
        if obj is missing:
            return _unknown(name, list(VARIABLES))
        view = VIEWS.get(type(obj))
        if view is not None:
            return _unknown(name, [f.name for f in dataclasses.fields(obj)], f"{view}.")
        return f"no {name!r} in a {type(obj).__name__} value"


def deadline_in_force(action: Action, deadline: dt.datetime | None) -> dt.date | dt.datetime:
    """``action.deadline`` for templates: the file's value, or an extension as staff gave it (a
    date when it falls at the end of a day in the action's zone, as a date in a file does)."""
    if deadline is None or deadline == action.deadline_at:
        return action.deadline
    local = deadline.astimezone(action.zone)
    day = local.date() - dt.timedelta(days=1)
    return day if deadline_instant(day, action.zone) == deadline else local


@lru_cache(maxsize=64)
def _locale(language: str) -> Any:
    return parse_language(language)


@lru_cache(maxsize=1024)
def _long_date(value: dt.date, language: str) -> str:
    return format_date(value, format="long", locale=_locale(language))


@lru_cache(maxsize=4096)
def _country_name(country: str, language: str) -> str:
    return str(_locale(language).territories.get(country, country)) if country else ""


@pass_context
def _date_filter(context: Context, value: dt.date | dt.datetime) -> str:
    if not isinstance(value, dt.date):
        raise TypeError(f"date needs a date, not {type(value).__name__}")
    day = value.date() if isinstance(value, dt.datetime) else value
    return _long_date(day, str(context["language"]))


def _where(exc: BaseException, fallback: str) -> str:
    """``path line N`` of the innermost template frame of the traceback, or of a syntax error."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or fallback} line {exc.lineno}"
    found: tuple[Template, int] | None = None
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if isinstance(template, Template):
            found = (template, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return fallback
    template, line = found
    return f"{template.filename or template.name} line {template.get_corresponding_lineno(line)}"


def _describe(exc: Exception, fallback: str) -> str:
    if isinstance(exc, (LimitExceeded, UndefinedError)):  # already in the template's terms
        detail = str(exc)
    elif isinstance(exc, TemplateSyntaxError):
        detail = f"{type(exc).__name__}: {exc.message}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    detail = " ".join(detail[:1000].split())
    if len(detail) > 300:  # messages may quote a whole value
        detail = detail[:299] + "…"
    return f"{_where(exc, fallback)}: {detail}"


class Renderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = LetterEnvironment(
            extra_filters={"date": _date_filter},
            loader=FileSystemLoader(str(templates_dir)),
            undefined=LetterUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._views: dict[tuple[str, str, str, dt.date], tuple[ActionView, TargetView]] = {}
        self._templates: dict[str, Template] = {}
        self._variants: dict[str, dict[str, list[str]]] = {}

    def _scan(self, template_set: str) -> dict[str, list[str]]:
        # Cached for the renderer's life: the dispatcher makes a new renderer when it reloads.
        found = self._variants.get(template_set)
        if found is None:
            found = self._variants[template_set] = variants.scan(self.templates_dir / template_set)
        return found

    def languages(self, template_set: str) -> set[str]:
        return set(self._scan(template_set))

    def variants(self, template_set: str, language: str) -> list[str]:
        """The variants of the set's letter in ``language``, ``a`` first."""
        return self._scan(template_set).get(language, [])

    def variant_for(self, action: Action, language: str, signer: Signer) -> str:
        """The variant this supporter's letters for this action use, to every target."""
        return variants.choose(self.variants(action.templates, language), action.id, signer.email)

    def language_for(self, action: Action, target: Target) -> str | None:
        """The target's first language with a template, else the action's first that has one."""
        have = self._scan(action.templates)
        for language in (*target.languages, *action.languages):
            if language in have:
                return language
        return None

    def _template(self, action: Action, language: str, variant: str) -> Template:
        # Cached here as well as in Jinja: its lookup (loader, cache key, globals) is ~1 µs a letter.
        name = f"{action.templates}/{variants.file_name(language, variant)}"
        template = self._templates.get(name)
        if template is None:
            template = self._templates[name] = self.env.get_template(name)
        return template

    def _views_for(
        self, action: Action, target: Target, language: str, deadline: dt.date | dt.datetime
    ) -> tuple[ActionView, TargetView]:
        key = (action.id, target.id, language, deadline)
        views = self._views.get(key)
        if views is None:
            salutation = target.salutation_for(language)
            if salutation is None:
                raise RenderError(action.id, target.id, language, f"target has no salutation for {language}")
            views = (
                ActionView(action.id, action.title, action.reference, deadline),
                TargetView(target.name, target.title, salutation, target.address_for(language)),
            )
            self._views[key] = views
        return views

    def render(
        self,
        action: Action,
        target: Target,
        language: str,
        signer: Signer,
        today: dt.date,
        deadline: dt.datetime | None = None,
        variant: str | None = None,
    ) -> Letter:
        """``deadline``: the one in force (after ``extend``); None: the action file's.
        ``variant``: None for the one this signer gets (``variant_for``)."""
        variant = variant or self.variant_for(action, language, signer)
        if variant not in self.variants(action.templates, language):
            have = ", ".join(self.variants(action.templates, language)) or "none"
            raise RenderError(action.id, target.id, language, f"no variant {variant} (variants: {have})")
        token = CURRENT_BUDGET.set(Budget())
        try:
            in_force = deadline_in_force(action, deadline)
            template = self._template(action, language, variant)
            subject, body = self._blocks(template, action, target, language, signer, today, in_force)
        except RenderError:
            raise
        except Exception as exc:  # anything a template does wrong is this letter's problem only
            fallback = str(self.templates_dir / action.templates / variants.file_name(language, variant))
            raise RenderError(action.id, target.id, language, _describe(exc, fallback)) from exc
        finally:
            CURRENT_BUDGET.reset(token)
        if not subject:
            raise RenderError(action.id, target.id, language, "the subject is empty")
        if action.subject_prefix:
            subject = f"{action.subject_prefix} {subject}"
        return Letter(subject=subject, body=body, language=language, variant=variant)

    def _blocks(
        self,
        template: Template,
        action: Action,
        target: Target,
        language: str,
        signer: Signer,
        today: dt.date,
        deadline: dt.date | dt.datetime,
    ) -> tuple[str, str]:
        action_view, target_view = self._views_for(action, target, language, deadline)
        context = template.new_context(
            {
                "action": action_view,
                "target": target_view,
                "supporter": SupporterView(
                    signer.name,
                    signer.city,
                    signer.country,
                    _country_name(signer.country, language),
                    signer.words,
                ),
                "language": language,
                "today": _long_date(today, language),
            }
        )
        blocks = template.blocks
        if "subject" not in blocks or "body" not in blocks:
            raise RenderError(
                action.id, target.id, language, "template needs a subject block and a body block"
            )
        too_long = f"the letter is longer than {MAX_LETTER:,} characters"
        subject = collect(blocks["subject"](context), MAX_LETTER, too_long)
        body = collect(blocks["body"](context), MAX_LETTER - len(subject), too_long)
        return " ".join(subject.split()), body.strip("\n") + "\n"

    def check(self, action: Action, channels: tuple[str, ...], today: dt.date) -> list[RenderError]:
        """Every target × language × variant of this action that would fail to render, before any
        send."""
        targets = {target_id for target_id, _ in action.delivery_pairs(channels)}
        problems = []
        # Plain loops: a generator's frame would move where a recursive template hits the limit,
        # and so the line reported.
        for target in action.targets:
            if target.id in targets:
                problems += self._check_one(action, target, today)
        return problems

    def _check_one(self, action: Action, target: Target, today: dt.date) -> list[RenderError]:
        language = self.language_for(action, target)
        if language is None:
            tried = ", ".join((*target.languages, *action.languages))
            where = self.templates_dir / action.templates
            return [RenderError(action.id, target.id, None, f"no template in {where} for any of {tried}")]
        problems = []
        # Rendered here, not in a helper per variant: a frame more would move where a recursive
        # template hits the limit, and so the line reported.
        for variant in self.variants(action.templates, language):
            try:
                letter = self.render(action, target, language, WORDS_SIGNER, today, variant=variant)
            except RenderError as exc:
                problems.append(exc)
                continue
            try:
                self.render(action, target, language, LONGEST_SIGNER, today, variant=variant)
            except RenderError as exc:
                longest = f"with a {NAME_LIMIT}-character signer name and city: {exc.problem}"
                problems.append(RenderError(action.id, target.id, language, longest))
                continue
            if not _places_words(letter):
                problems.append(
                    RenderError(action.id, target.id, language, _in(language, variant) + WORDS_MISSING)
                )
        return problems
