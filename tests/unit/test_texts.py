"""The texts catalogue (dispatcher/letters/texts/): every shipped language translates every message
of the contexts it is offered for, with the English placeholders (named in a comment); the one
language policy for pages, receipts and fax labels; plural forms; the .po files as package data."""

from __future__ import annotations

import string
import tomllib
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.pofile import read_po

from dispatcher.letters import texts
from dispatcher.letters.texts import FAX, JOIN, RECEIPT, language_for, ngettext, offered

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "dispatcher" / "letters" / "texts"
CONTEXTS = (JOIN, RECEIPT, FAX)


def messages(language: str) -> dict[tuple[str, str], Message]:
    with (HERE / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    return {(m.context or "", key_of(m)): m for m in catalog if m.id}


def key_of(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def forms(message: Message) -> list[str]:
    string = message.string
    return list(string) if isinstance(string, tuple | list) else [string or ""]


def fields(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_the_shipped_languages_are_the_folders() -> None:
    assert sorted(texts.SHIPPED) == sorted(p.name for p in HERE.iterdir() if p.is_dir() and p.name[0] != "_")


@pytest.mark.parametrize("language", texts.SHIPPED)
def test_each_message_has_the_english_placeholders_and_flag(language: str) -> None:
    english, own = messages(texts.ENGLISH), messages(language)
    assert set(own) <= set(english), "a message English lacks"
    for key, message in own.items():
        wanted = fields(forms(english[key])[-1])
        for form in forms(message):
            assert fields(form) == wanted, (language, key, form)
            assert not form.startswith("\n") and not form.endswith("\n"), (language, key)  # as msgfmt
        # Babel and msgfmt check brace-format flags against the msgid, here a key: the comment
        # tells translators instead, and this test checks it.
        named = [c for c in message.auto_comments if c.startswith("Placeholders: ")]
        assert named == ([f"Placeholders: {', '.join(f'{{{n}}}' for n in sorted(wanted))}"] if wanted else [])
        assert isinstance(message.id, tuple) == isinstance(english[key].id, tuple), (language, key)
        assert not message.fuzzy, (language, key)


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_language_is_offered_where_it_translates_every_message(context: str) -> None:
    english = {key for key in messages(texts.ENGLISH) if key[0] == context}
    complete = [lang for lang in texts.SHIPPED if all(all(forms(m)) for k, m in messages(lang).items())]
    whole = [lang for lang in complete if english <= set(messages(lang))]
    assert list(offered(context)) == whole and texts.ENGLISH in whole
    # What people read today: pages, emails and receipts in five languages; fax labels in six.
    five = ["en", "fr", "es", "de", "zh-Hans"]
    assert whole == (five if context != FAX else [*five, "zh-Hant"])


@pytest.mark.parametrize(
    ("tag", "context", "language"),
    [
        ("en-GB", JOIN, "en"),
        ("de-CH", RECEIPT, "de"),
        ("fr-CA", JOIN, "fr"),
        ("ZH-HANS", JOIN, "zh-Hans"),
        ("zh-CN", RECEIPT, "zh-Hans"),
        ("zh", JOIN, "zh-Hans"),  # Chinese without a region or script is written in Hans
        # Traditional characters: never Simplified in their place (a script the reader did not
        # choose), so English where zh-Hant lacks words, their own labels on a fax.
        ("zh-TW", JOIN, None),
        ("zh-Hant", RECEIPT, None),
        ("zh-HK", FAX, "zh-Hant"),
        ("zh-TW", FAX, "zh-Hant"),
        # A language in a region Babel has no data for, or a tag with extensions: its language
        # still counts (what macOS sends with the system language and region set apart).
        ("fr-DE", JOIN, "fr"),
        ("de-US", RECEIPT, "de"),
        ("de-DE-x-work", JOIN, "de"),
        ("es-ES-u-nu-latn", JOIN, "es"),
        ("zh-TW-x-work", JOIN, None),
        ("pt-BR", JOIN, None),
        ("tlh", JOIN, None),
        ("", RECEIPT, None),
        ("*", JOIN, None),
    ],
)
def test_one_language_policy(tag: str, context: str, language: str | None) -> None:
    assert language_for(tag, context) == language


def test_lookups_fall_back_to_english_and_plurals_follow_the_language() -> None:
    assert texts.gettext("zh-Hant", FAX, "fax") == "傳真"
    assert texts.gettext("zh-Hant", JOIN, "submit") == "Send"
    assert texts.gettext("pt", JOIN, "submit") == "Send"
    assert ngettext("fr", RECEIPT, "more", 1) == "… et {count} autre."
    assert ngettext("fr", RECEIPT, "more", 2) == "… et {count} autres."
    assert ngettext("zh-Hans", RECEIPT, "more", 5) == "……另有{count}封。"
    assert texts.texts("de", JOIN).plural("expiry_months", 1) == "{n} Monat"
    t = texts.texts("fr", JOIN)
    assert t["submit"] == t.submit == "Envoyer" and "submit" in t and "nothing" not in t
    with pytest.raises(KeyError):
        t["nothing"]
    # Jinja reads t.key as an attribute first: no message may hide behind one of the view's own.
    assert set(t) & set(dir(t)) == set() and t.language == "Votre langue"


def test_the_package_data_ships_every_catalogue() -> None:
    """What setuptools puts in the wheel beside the module (a wheel built from this tree was
    checked by hand to carry them and answer from them: building one here needs the network)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {p for pattern in data["dispatcher.letters.texts"] for p in HERE.glob(pattern)}
    assert shipped == set(HERE.rglob("*.po")) and len(shipped) == len(texts.SHIPPED)
