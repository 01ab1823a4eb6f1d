"""Letters from templates: ``templates/<set>/<language>.j2`` in a sandboxed Jinja2 environment.

A template defines a ``subject`` block and a ``body`` block. Templates are trusted less than code
(staff edit them), hence the sandbox, and StrictUndefined so that a typo is an error at
``dispatcher check`` time instead of a blank in a letter already sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dispatcher.config import Action, Target, parse_language
from dispatcher.store import Signer

SAMPLE_SIGNER = Signer(
    name="Zoë Sample-Signer 林小文", email="sample@example.net", city="Zürich", country="CH", language="de"
)


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


@dataclass(frozen=True)
class ActionView:
    id: str
    title: str
    reference: str
    deadline: dt.date | dt.datetime


@dataclass(frozen=True)
class TargetView:
    name: str
    title: str
    salutation: str
    address: str


@dataclass(frozen=True)
class SupporterView:
    name: str
    city: str
    country: str
    country_name: str


@lru_cache(maxsize=64)
def _locale(language: str) -> Any:
    return parse_language(language)


@lru_cache(maxsize=1024)
def _long_date(value: dt.date, language: str) -> str:
    return format_date(value, format="long", locale=_locale(language))


@lru_cache(maxsize=4096)
def _country_name(country: str, language: str) -> str:
    return str(_locale(language).territories.get(country, country)) if country else ""


_VIEW_FIELDS = {
    view: frozenset(f.name for f in fields(view)) for view in (ActionView, TargetView, SupporterView)
}


class LetterEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with our view objects limited to their data fields.

    The views are frozen dataclasses of plain values, so a template may read their fields and
    nothing else (no methods, no dunders). Deciding that from a dict lookup, rather than by the
    sandbox's general checks, takes a tenth of the time: the checks were most of a render.
    """

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = _VIEW_FIELDS.get(type(obj))
        if allowed is not None:
            return attr in allowed
        return bool(super().is_safe_attribute(obj, attr, value))


class Renderer:
    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = LetterEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters["date"] = self._date_filter
        self._views: dict[tuple[str, str, str], tuple[ActionView, TargetView]] = {}
        self._languages: dict[str, set[str]] = {}

    @staticmethod
    @pass_context
    def _date_filter(context: Context, value: dt.date | dt.datetime) -> str:
        day = value.date() if isinstance(value, dt.datetime) else value
        return _long_date(day, str(context["language"]))

    def languages(self, template_set: str) -> set[str]:
        # Cached for the renderer's life: the dispatcher makes a new renderer when it reloads.
        found = self._languages.get(template_set)
        if found is None:
            folder = self.templates_dir / template_set
            found = {p.stem for p in folder.glob("*.j2")} if folder.is_dir() else set()
            self._languages[template_set] = found
        return found

    def language_for(self, action: Action, target: Target) -> str | None:
        """The target's first language with a template, else the action's first that has one."""
        have = self.languages(action.templates)
        for language in (*target.languages, *action.languages):
            if language in have:
                return language
        return None

    def _template(self, action: Action, language: str) -> Template:
        return self.env.get_template(f"{action.templates}/{language}.j2")

    def _views_for(self, action: Action, target: Target, language: str) -> tuple[ActionView, TargetView]:
        key = (action.id, target.id, language)
        views = self._views.get(key)
        if views is None:
            salutation = target.salutation_for(language)
            if salutation is None:
                raise RenderError(action.id, target.id, language, f"target has no salutation for {language}")
            views = (
                ActionView(action.id, action.title, action.reference, action.deadline),
                TargetView(target.name, target.title, salutation, target.address_for(language)),
            )
            self._views[key] = views
        return views

    def render(self, action: Action, target: Target, language: str, signer: Signer, today: dt.date) -> Letter:
        try:
            template = self._template(action, language)
            action_view, target_view = self._views_for(action, target, language)
            context = template.new_context(
                {
                    "action": action_view,
                    "target": target_view,
                    "supporter": SupporterView(
                        signer.name, signer.city, signer.country, _country_name(signer.country, language)
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
            subject = " ".join("".join(blocks["subject"](context)).split())
            body = "".join(blocks["body"](context)).strip("\n") + "\n"
        except RenderError:
            raise
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" (line {line})" if line else ""
            raise RenderError(action.id, target.id, language, f"{type(exc).__name__}{where}: {exc}") from exc
        if not subject:
            raise RenderError(action.id, target.id, language, "the subject is empty")
        if action.subject_prefix:
            subject = f"{action.subject_prefix} {subject}"
        return Letter(subject=subject, body=body, language=language)

    def check(self, action: Action, channels: tuple[str, ...], today: dt.date) -> list[RenderError]:
        """Every target × language of this action that would fail to render, before any send."""
        problems: list[RenderError] = []
        targets = {target_id for target_id, _ in action.delivery_pairs(channels)}
        for target in action.targets:
            if target.id not in targets:
                continue
            language = self.language_for(action, target)
            if language is None:
                problems.append(
                    RenderError(
                        action.id,
                        target.id,
                        None,
                        f"no template in {self.templates_dir / action.templates} for any of "
                        f"{', '.join((*target.languages, *action.languages))}",
                    )
                )
                continue
            try:
                self.render(action, target, language, SAMPLE_SIGNER, today)
            except RenderError as exc:
                problems.append(exc)
        return problems
