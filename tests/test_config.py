"""Action files and settings: good files load, bad ones name the file, the field and the problem."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dispatcher.config import ActionStatus, load_action_file, load_actions, load_settings, script_of
from tests.conftest import ROOT

GOOD = """
id: act
title: An action
deadline: 2030-01-31
timezone: Asia/Taipei
status: active
languages: [zh-Hant, en]
targets:
  - id: pres
    name: President
    role: to
    country: CN
    languages: [zh-Hans, en]
    salutation: {en: Dear President, zh-Hans: 尊敬的主席}
    email: pres@example.org
    fax: "010 6238 1025"
    address: {Latn: "Beijing", Hans: "北京"}
    channels: [email, fax]
"""


def write(tmp_path: Path, text: str, name: str = "act.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_actions_load_and_the_seeds_are_closed() -> None:
    loaded = load_actions(ROOT / "config" / "actions")
    assert loaded.errors == []
    assert set(loaded.actions) == {
        "demo-xinjiang",
        "eu-xinjiang-2018",
        "petition-xuar-camps",
        "ua-61-21",
        "ua-61-21-update-1",
    }
    update = loaded.actions["ua-61-21-update-1"]
    assert update.reference.startswith("UA 61/21 Update 1")
    assert update.languages == ["zh-Hans", "zh-Hant", "en"]
    xi = update.target("xi-jinping")
    assert xi.fax == "+861062381025" and xi.email == "english@mail.gov.cn"
    demo = loaded.actions["demo-xinjiang"]
    assert all(t.email and t.email.endswith("@example.org") and t.fax is None for t in demo.targets)


def test_deadline_date_means_end_of_that_day_in_the_action_zone(tmp_path: Path) -> None:
    action = load_action_file(write(tmp_path, GOOD))
    assert not isinstance(action, list)
    assert action.deadline_at == dt.datetime(2030, 1, 31, 16, 0, tzinfo=dt.UTC)  # midnight in Taipei
    assert action.status is ActionStatus.ACTIVE
    pres = action.target("pres")
    assert pres.fax == "+861062381025"  # national form parsed with the target's country
    assert pres.address_for("zh-Hans") == "北京" and pres.address_for("zh-Hant") == "Beijing"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (("email: pres@example.org", "email: not-an-address"), "targets[0].email", "not a valid email"),
        (('fax: "010 6238 1025"', 'fax: "12"'), "targets[0]", "not a"),
        (("timezone: Asia/Taipei", "timezone: Mars/Olympus"), "timezone", "IANA"),
        (("languages: [zh-Hant, en]", "languages: [klingon-xx]"), "languages[0]", "BCP 47"),
        (("deadline: 2030-01-31", "deadline: someday"), "deadline", ""),
        (("channels: [email, fax]", "channels: [email, pigeon]"), "targets[0].channels[1]", ""),
        (("role: to", "role: boss"), "targets[0].role", ""),
        (("title: An action", "title: An action\ncolour: red"), "colour", "Extra inputs"),
        (("status: active", "status: running"), "status", ""),
    ],
)
def test_a_bad_field_is_named(tmp_path: Path, change: tuple[str, str], field: str, problem: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    errors = load_action_file(path)
    assert isinstance(errors, list) and errors
    text = "\n".join(str(e) for e in errors)
    assert str(path) in text and field in text and problem in text


def test_channel_without_address_and_duplicate_targets(tmp_path: Path) -> None:
    errors = load_action_file(write(tmp_path, GOOD.replace('    fax: "010 6238 1025"\n', "")))
    assert isinstance(errors, list) and "channel 'fax' is listed but the target has no fax" in str(errors[0])


def test_a_bad_file_stops_only_that_action(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("id: act", "id: other").replace("pres@example.org", "x@"), "other.yaml")
    write(tmp_path, "id: [unclosed", "broken.yaml")
    write(tmp_path, GOOD, "twin.yaml")
    loaded = load_actions(tmp_path)
    assert list(loaded.actions) == ["act"]
    text = "\n".join(map(str, loaded.errors))
    assert "other.yaml: targets[0].email" in text
    assert "broken.yaml: not valid YAML" in text
    assert "twin.yaml: id: 'act' is already used by" in text


def test_scripts() -> None:
    assert [script_of(t) for t in ("zh-Hans", "zh-Hant", "en", "de", "zh")] == [
        "Hans",
        "Hant",
        "Latn",
        "Latn",
        "Hans",
    ]


def test_settings_from_env_and_file(tmp_path: Path) -> None:
    file = tmp_path / "dispatcher.toml"
    file.write_text("smtp_pool = 4\nrate_per_target = 0.5\n")
    settings = load_settings({"DISPATCHER_SMTP_POOL": "16", "DISPATCHER_FROM": "Org <org@example.org>"}, file)
    assert (
        settings.smtp_pool == 16
        and settings.rate_per_target == 0.5
        and settings.sender == "Org <org@example.org>"
    )
    assert settings.database_url == "sqlite:///var/dispatcher.db" and settings.smtp_url is None
    file.write_text('smtp_url = "smtp://user:secret@mail.example.org"\n')
    with pytest.raises(ValueError, match="passwords belong in DISPATCHER_SMTP_URL"):
        load_settings({}, file)
    with pytest.raises(ValueError, match="scheme"):
        load_settings({"DISPATCHER_SMTP_URL": "http://x"}, tmp_path / "none.toml")
