"""What the README tells an operator to do works: its CSV example imports against the shipped
actions, every ``dispatcher`` command it names exists, and ``web --help`` says what it serves."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from dispatcher.cli import main
from tests.campaigns.test_cli import cli
from tests.conftest import ROOT, cli_env

README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = re.compile(r"`dispatcher ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)")


def test_the_csv_example_imports_against_the_shipped_actions(tmp_path: Path) -> None:
    (example,) = re.findall(r"```csv\n(.*?)```", README, re.S)
    path = tmp_path / "example.csv"
    path.write_text(example, encoding="utf-8")
    assert "imported 2 supporters" in cli(cli_env(tmp_path), "supporters", "import", str(path)).output


def test_every_command_the_readme_names_exists() -> None:
    named = set(COMMAND.findall(README))
    assert {"run", "reopen", "users add"} <= {n.split(" ")[0] for n in named} | named
    for name in named:
        group: click.Command = main
        for word in name.split(" "):
            if not isinstance(group, click.Group):
                break  # an argument after a command
            found = group.get_command(click.Context(group), word)
            assert found is not None, f"the README names `dispatcher {name}`, which does not exist"
            group = found


def test_web_help_says_what_the_web_app_serves() -> None:
    out = CliRunner().invoke(main, ["web", "--help"]).output
    assert "dashboard" in out and "opt-in" in out and "CRM API" in out
