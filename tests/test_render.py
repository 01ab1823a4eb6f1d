"""Letters render per target and language; template mistakes are caught before anything is sent."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from dispatcher.actions.files import load_actions
from dispatcher.actions.model import Action, deadline_instant
from dispatcher.letters.render import Renderer, RenderError
from dispatcher.models import Signer
from tests.conftest import ROOT

TODAY = dt.date(2026, 11, 23)
SIGNER = Signer("林小文", "lin@example.net", "Taipei", "TW", "zh-Hant")


@pytest.fixture(scope="module")
def shipped() -> dict[str, Action]:
    return load_actions(ROOT / "config" / "actions").actions


def test_every_shipped_action_renders(shipped: dict[str, Action]) -> None:
    renderer = Renderer(ROOT / "templates")
    for action in shipped.values():
        assert renderer.check(action, ("email", "fax"), TODAY) == []


def test_language_follows_target_then_action(shipped: dict[str, Action]) -> None:
    renderer = Renderer(ROOT / "templates")
    update = shipped["ua-61-21-update-1"]
    xi = update.target("xi-jinping")
    assert renderer.language_for(update, xi) == "zh-Hans"
    letter = renderer.render(update, xi, "zh-Hans", SIGNER, TODAY)
    assert "2026年11月23日" in letter.body and "林小文" in letter.body and "台湾" in letter.body
    english = renderer.render(update, xi, "en", SIGNER, TODAY)
    assert "November 23, 2026" in english.body and "Taiwan" in english.body
    assert "UA 61/21" in english.subject
    traditional = renderer.render(update, xi, "zh-Hant", SIGNER, TODAY)
    assert "致國家主席習近平" in traditional.body


def make(
    tmp_path: Path, templates: dict[str, str], target_langs: str = "[de, en]"
) -> tuple[Renderer, Action]:
    (tmp_path / "actions").mkdir(parents=True)
    (tmp_path / "actions" / "a.yaml").write_text(
        f"""
id: a
title: T
deadline: 2030-01-01
status: active
languages: [en]
targets:
  - id: t
    name: Target
    languages: {target_langs}
    salutation: {{en: Dear Target}}
    email: t@example.org
    channels: [email]
"""
    )
    for name, text in templates.items():
        path = tmp_path / "templates" / "a" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    loaded = load_actions(tmp_path / "actions")
    assert not loaded.errors
    return Renderer(tmp_path / "templates"), loaded.actions["a"]


GOOD = (
    "{% block subject %}Hello {{ target.name }}{% endblock %}"
    "{% block body %}{{ target.salutation }},\n{{ supporter.words }}\n{{ supporter.name }}{% endblock %}"
)


def test_falls_back_to_the_action_language(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, {"en.j2": GOOD})
    assert renderer.language_for(action, action.target("t")) == "en"
    assert renderer.check(action, ("email",), TODAY) == []


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (
            "{% block subject %}x{% endblock %}{% block body %}{{ supporter.nmae }}{% endblock %}",
            "unknown variable supporter.nmae (did you mean supporter.name?)",
        ),
        ("{% block subject %}x{% endblock %}{% block body %}{{ oops(){% endblock %}", "TemplateSyntaxError"),
        ("{% block body %}no subject{% endblock %}", "subject block"),
        ("{% block subject %}x{% endblock %}{% block body %}{{ ''.__class__.__mro__ }}{% endblock %}", ""),
        (
            "{% block subject %}x{% endblock %}"
            "{% block body %}{{ target.__init__.__globals__ }}{% endblock %}",
            "",
        ),
    ],
)
def test_template_errors_are_reported_by_check(tmp_path: Path, template: str, problem: str) -> None:
    renderer, action = make(tmp_path, {"en.j2": template})
    problems = renderer.check(action, ("email",), TODAY)
    assert len(problems) == 1 and problem in str(problems[0])


def test_missing_template_and_salutation(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, {"de.j2": GOOD})
    problems = renderer.check(action, ("email",), TODAY)
    assert "no salutation for de" in str(problems[0])
    renderer, action = make(tmp_path / "x", {"fr.j2": GOOD}, target_langs="[de]")
    problems = renderer.check(action, ("email",), TODAY)
    assert "no template" in str(problems[0])
    with pytest.raises(RenderError):
        renderer.render(action, action.target("t"), "en", SIGNER, TODAY)


def test_supporter_text_is_data_not_template(tmp_path: Path) -> None:
    renderer, action = make(tmp_path, {"en.j2": GOOD})
    evil = Signer("{{ 7*7 }} {% raw %}", "e@example.net", "", "", "en")
    letter = renderer.render(action, action.target("t"), "en", evil, TODAY)
    assert "{{ 7*7 }} {% raw %}" in letter.body


def test_the_supporters_own_words_go_in_as_text_before_the_closing(shipped: dict[str, Action]) -> None:
    renderer = Renderer(ROOT / "templates")
    update = shipped["ua-61-21-update-1"]
    xi = update.target("xi-jinping")
    words = "请释放他们。{{ 7*7 }}"
    for language, closing in (("zh-Hans", "此致"), ("en", "Yours sincerely")):
        body = renderer.render(update, xi, language, replace(SIGNER, words=words), TODAY).body
        assert words in body and body.index(words) < body.index(closing)
        plain = renderer.render(update, xi, language, SIGNER, TODAY).body
        assert "\n\n\n" not in plain.replace("\u3000", ""), "no gap where no words were given"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("action.titel", "unknown variable action.titel (did you mean action.title?)"),
        ("suporter.name", "unknown variable suporter (did you mean supporter?)"),
        ("target.salutaton", "unknown variable target.salutaton (did you mean target.salutation?)"),
        ("action.xyz", "unknown variable action.xyz"),
    ],
)
def test_an_unknown_variable_is_named_as_the_template_wrote_it(
    tmp_path: Path, expression: str, message: str
) -> None:
    template = (
        f"{{% block subject %}}x{{% endblock %}}{{% block body %}}{{{{ {expression} }}}}{{% endblock %}}"
    )
    renderer, action = make(tmp_path, {"en.j2": template})
    (problem,) = renderer.check(action, ("email",), TODAY)
    assert problem.problem.endswith(f"line 1: {message}") and "ActionView" not in problem.problem


def test_check_holds_an_action_whose_template_leaves_out_the_supporters_words(tmp_path: Path) -> None:
    dropped = GOOD.replace("{{ supporter.words }}", "")
    renderer, action = make(tmp_path, {"en.j2": dropped})
    (problem,) = renderer.check(action, ("email",), TODAY)
    assert "does not place supporter.words" in problem.problem
    wrapped = GOOD.replace("{{ supporter.words }}", "{{ supporter.words | wordwrap(20) }}")
    renderer, action = make(tmp_path / "wrapped", {"en.j2": wrapped})
    assert renderer.check(action, ("email",), TODAY) == []  # placed, only wrapped


def test_action_deadline_is_the_one_in_force_after_an_extension(tmp_path: Path) -> None:
    template = (
        "{% block subject %}By {{ action.deadline | date }}{% endblock %}"
        + GOOD.split("{% endblock %}", 1)[1]
    )
    renderer, action = make(tmp_path, {"en.j2": template})
    target = action.target("t")
    assert renderer.render(action, target, "en", SIGNER, TODAY).subject == "By January 1, 2030"
    extended = deadline_instant(dt.date(2030, 3, 15), action.zone)
    assert renderer.render(action, target, "en", SIGNER, TODAY, extended).subject == "By March 15, 2030"
    noon = dt.datetime(2030, 4, 2, 12, 0, tzinfo=dt.UTC)
    assert renderer.render(action, target, "en", SIGNER, TODAY, noon).subject == "By April 2, 2030"
    assert (
        renderer.render(action, target, "en", SIGNER, TODAY, action.deadline_at).subject
        == "By January 1, 2030"
    )
