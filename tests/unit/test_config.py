"""Action files and settings: good files load, bad ones name the file, the field and the problem."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatcher.actions.files import load_action_file, load_actions
from dispatcher.language import script_of
from dispatcher.models import ActionStatus, Caps
from dispatcher.settings import Settings, load_settings
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
        # Consents store "zh-Hant": a tag cased otherwise would match none of them.
        (("languages: [zh-Hant, en]", "languages: [zh-hant, en]"), "languages[0]", "as 'zh-Hant'"),
        (("languages: [zh-Hant, en]", "languages: [zh-Hant, en_GB]"), "languages[1]", "as 'en-GB'"),
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


def test_caps_default_to_proca_s_pace_and_none_lifts_one(tmp_path: Path) -> None:
    none = tmp_path / "none.toml"
    assert load_settings({}, none).caps("Europe/Brussels") == Caps(30, 300, 120, "Europe/Brussels")
    lifted = load_settings({"DISPATCHER_MAX_PER_HOUR": "none", "DISPATCHER_DOMAIN_MAX_PER_HOUR": ""}, none)
    assert lifted.caps() == Caps(None, 300, None)
    file = tmp_path / "dispatcher.toml"
    file.write_text("max_per_day = 50\n")
    assert load_settings({}, file).max_per_day == 50
    with pytest.raises(
        ValueError, match="DISPATCHER_MAX_PER_HOUR: Input should be greater than or equal to 1"
    ):
        load_settings({"DISPATCHER_MAX_PER_HOUR": "0"}, none)


# DISPATCHER_SMTP_URL: parsed once, the password never shown --------------------------------------
SECRET = "hunter2-Zq9"


def smtp(url: str, **env: str) -> Settings:
    return load_settings({"DISPATCHER_SMTP_URL": url, **env}, Path("/nonexistent/none.toml"))


@pytest.mark.parametrize(
    ("url", "user", "password"),
    [
        ("smtps://user:pa/ss@mail.example.org:465", "user", "pa/ss"),
        ("smtps://user:p#a?s@s/w@mail.example.org", "user", "p#a?s@s/w"),
        ("smtp+starttls://me@example.org:pa:ss@mail.example.org:587", "me@example.org", "pa:ss"),
        ("smtps://me%40example.org:p%2Fw%25@mail.example.org/", "me@example.org", "p/w%"),
        ("SMTPS://u:s3cr3t p@ss@mail.example.org", "u", "s3cr3t p@ss"),
    ],
)
def test_smtp_url_userinfo_is_split_at_the_last_at_sign(url: str, user: str, password: str) -> None:
    parsed = smtp(url).smtp_url
    assert parsed is not None and parsed.host == "mail.example.org"
    assert (parsed.username, parsed.password) == (user, password)


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("smtp://relay.local", "smtp", "relay.local", 25),
        ("smtps://u:p@mail.example.org", "smtps", "mail.example.org", 465),
        ("smtp+starttls://u:p@mail.example.org", "smtp+starttls", "mail.example.org", 587),
        ("smtp://[::1]:2525", "smtp", "::1", 2525),
        ("smtp://127.0.0.1:2525/", "smtp", "127.0.0.1", 2525),
    ],
)
def test_smtp_url_host_port_and_default_ports(url: str, scheme: str, host: str, port: int) -> None:
    parsed = smtp(url).smtp_url
    assert parsed is not None and (parsed.scheme, parsed.host, parsed.port) == (scheme, host, port)


def test_no_smtp_url_means_maildir() -> None:
    assert smtp("").smtp_url is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"ftp://user:{SECRET}@host", "scheme 'ftp' is not smtp, smtps or smtp+starttls"),
        (f"user:{SECRET}@host", "must start with smtp://, smtps:// or smtp+starttls://"),
        (f"smtps://user:{SECRET}@host:notaport", "host[:port]"),
        (f"smtps://user:{SECRET}@host:99999", "port"),
        (f"smtps://user:{SECRET}:host", "host[:port]"),
        (f"smtps://user:{SECRET}@", "host[:port]"),
        (f"smtps://user:{SECRET}@host?x=1", "host[:port]"),
        (f"smtps://:{SECRET}@host", "no user name"),
        ("smtps://user@host", "no password"),
        (f"smtp://user:{SECRET}@host", "smtps://"),
    ],
)
def test_a_bad_smtp_url_is_explained_without_its_secret(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        smtp(url)
    text = str(caught.value)
    assert "DISPATCHER_SMTP_URL" in text and problem in text, text
    assert SECRET not in text and SECRET not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained input


def test_plain_auth_needs_tls_or_an_explicit_opt_in() -> None:
    with pytest.raises(ValueError, match=r"smtp\+starttls://.*DISPATCHER_SMTP_ALLOW_PLAIN_AUTH"):
        smtp(f"smtp://user:{SECRET}@relay.local")
    allowed = smtp(f"smtp://user:{SECRET}@relay.local", DISPATCHER_SMTP_ALLOW_PLAIN_AUTH="true")
    assert allowed.smtp_allow_plain_auth and allowed.smtp_url is not None
    assert allowed.smtp_url.password == SECRET
    assert not smtp("smtp://relay.local").smtp_allow_plain_auth  # no credentials: nothing to protect


def test_the_password_is_in_no_repr_str_or_dump() -> None:
    settings = smtp(f"smtps://user:{SECRET}@mail.example.org")
    assert settings.smtp_url is not None
    shown = [repr(settings), str(settings), repr(settings.smtp_url), str(settings.smtp_url)]
    shown += [str(settings.model_dump()), settings.model_dump_json()]
    assert all(SECRET not in s for s in shown), shown
    assert str(settings.smtp_url) == "smtps://mail.example.org:465"


def test_settings_validated_directly_hide_their_input() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"smtp_url": f"ftp://user:{SECRET}@host", "smtp_pool": "many"})
    assert SECRET not in str(caught.value) and "input_value" not in str(caught.value)


def test_a_password_in_the_settings_file_is_refused_whatever_its_characters(tmp_path: Path) -> None:
    file = tmp_path / "dispatcher.toml"
    file.write_text(f'smtp_url = "smtps://user:pa/{SECRET}@mail.example.org"\n')
    with pytest.raises(ValueError, match="passwords belong in DISPATCHER_SMTP_URL") as caught:
        load_settings({}, file)
    assert SECRET not in str(caught.value)
    file.write_text('smtp_url = "smtps://relay.example.org"\nsmtp_pool = "many"\n')
    with pytest.raises(ValueError, match=r"dispatcher.toml: smtp_pool: .*integer"):
        load_settings({}, file)


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("+442079460000", "+442079460000"),
        ("+44 20 7946 0000", "+442079460000"),
        ("0044 20 7946 0000", "+442079460000"),
        ("0033142756000", "+33142756000"),  # YAML 1.1 would read these digits as an octal number
    ],
)
def test_a_fax_number_written_without_quotes_is_read_as_written(
    tmp_path: Path, written: str, stored: str
) -> None:
    """YAML reads ``+442079460000`` as the integer 442079460000: the number stays the text."""
    action = load_action_file(write(tmp_path, GOOD.replace('fax: "010 6238 1025"', f"fax: {written}")))
    assert not isinstance(action, list), action
    assert action.targets[0].fax == stored
