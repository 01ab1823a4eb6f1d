"""The SMTP password never appears in what the real ``dispatcher`` command prints, whatever goes wrong.

Each case runs the installed console script in its own process, as an operator would, with
``-v`` so that every library's debug logging is on too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from dispatcher.store import open_store
from tests.campaigns.test_smtp_tls import USER, secret_forms, serve
from tests.conftest import ROOT, cli_env
from tests.support.processes import free_port

DISPATCHER = Path(sys.executable).with_name("dispatcher")
SECRET = "hunter2-Zq9"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return {**inherited, **cli_env(tmp_path, DISPATCHER_SMTP_TIMEOUT="5")}


def dispatcher(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Exit code and stdout + stderr of one run of the real command."""
    done = subprocess.run(
        [str(DISPATCHER), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout + done.stderr


def shows_secret(text: str, password: str = SECRET) -> bool:
    return any(form in text for form in secret_forms(password))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"ftp://user:{SECRET}@host", "scheme 'ftp' is not smtp, smtps or smtp+starttls"),
        (f"user:{SECRET}@host", "must start with smtp://, smtps:// or smtp+starttls://"),
        (f"smtps://user:{SECRET}@host:465x", "host[:port]"),
        (f"smtps://user:{SECRET}@host:70000", "port"),
        (f"smtps://user:{SECRET}:host", "host[:port]"),
        (f"smtps://:{SECRET}@host", "no user name"),
        (f"smtp://user:{SECRET}@host", "use smtps:// (port 465) or smtp+starttls:// (port 587)"),
    ],
)
def test_a_bad_smtp_url_stops_with_a_clear_message_and_no_password(
    env: dict[str, str], url: str, problem: str
) -> None:
    code, out = dispatcher({**env, "DISPATCHER_SMTP_URL": url}, "-v", "run", "--once")
    assert code != 0 and "DISPATCHER_SMTP_URL" in out and problem in out, out
    assert "Traceback" not in out and not shows_secret(out), out


def test_a_password_in_the_settings_file_is_refused_without_showing_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    settings = tmp_path / "dispatcher.toml"
    settings.write_text(f'smtp_url = "smtps://user:pa/{SECRET}@mail.example.org"\n')
    code, out = dispatcher({**env, "DISPATCHER_SETTINGS": str(settings)}, "-v", "queue")
    assert code != 0 and "passwords belong in DISPATCHER_SMTP_URL" in out, out
    assert "Traceback" not in out and not shows_secret(out), out


def import_supporters(env: dict[str, str]) -> None:
    code, out = dispatcher(env, "supporters", "import", str(ROOT / "config/demo-supporters.csv"))
    assert code == 0, out


def stored_details(env: dict[str, str]) -> list[str]:
    store = open_store(env["DISPATCHER_DATABASE_URL"])
    try:
        return [a.detail for a in store.attempt_log()]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [("smtps", {}), ("smtp", {"DISPATCHER_SMTP_ALLOW_PLAIN_AUTH": "true"})],
)
def test_an_unreachable_server_shows_where_but_not_the_password(
    env: dict[str, str], scheme: str, extra: dict[str, str]
) -> None:
    import_supporters(env)
    port = free_port()  # nothing listens there: every connect is refused
    url = f"{scheme}://{USER}:pa/ss#{SECRET}?@127.0.0.1:{port}"
    _, out = dispatcher({**env, **extra, "DISPATCHER_SMTP_URL": url}, "-v", "run", "--once")
    assert f"sending email via {scheme}://127.0.0.1:{port}" in out, out
    assert "Traceback" not in out and not shows_secret(out), out
    assert not any(shows_secret(d) for d in stored_details(env))


def test_a_refused_login_shows_no_password(env: dict[str, str], tmp_path: Path) -> None:
    authority = trustme.CA()
    cafile = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    controller, handler = serve(authority, implicit=False)
    wrong = f"{SECRET}/#?@x"
    env = {
        **env,
        "DISPATCHER_SMTP_URL": f"smtp+starttls://{USER}:{wrong}@localhost:{controller.port}",
        "DISPATCHER_SMTP_CAFILE": str(cafile),
    }
    try:
        import_supporters(env)
        _, out = dispatcher(env, "-v", "run", "--once")
        _, log = dispatcher(env, "log", "--format", "json")
    finally:
        controller.stop()
    assert handler.logins == [] and "535" in log, log
    assert "Traceback" not in out and not shows_secret(out, wrong) and not shows_secret(log, wrong), out


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://user:{SECRET}@127.0.0.1:1/db", "cannot open postgresql://user:***@127.0.0.1:1/db"),
        (f"postgresql://user:{SECRET}@host:5x/db", "does not parse"),
        (f"notaurl:{SECRET}", "is not a database URL"),
        (f"mysql://user:{SECRET}@host/db", "No module named"),
    ],
)
def test_a_bad_database_url_is_a_clear_error_without_its_password(
    env: dict[str, str], url: str, problem: str
) -> None:
    code, output = dispatcher({**env, "DISPATCHER_DATABASE_URL": url}, "-v", "queue")
    assert code == 1 and problem in output and "Traceback" not in output, output
    assert not shows_secret(output), output


def test_a_store_error_shows_no_statement_parameters(db_url: str) -> None:
    """A failed statement's message is logged and printed: it must not carry its parameters,
    which hold supporters' addresses and, when the secret row is written, the Message-ID secret."""
    from sqlalchemy import exc, text

    from dispatcher.store.sql import engine_for

    engine = engine_for(db_url)
    try:
        with pytest.raises(exc.DBAPIError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO no_such_table VALUES (:v)"), {"v": "ada@example.org"})
    finally:
        engine.dispose()
    assert "ada@example.org" not in str(raised.value)
