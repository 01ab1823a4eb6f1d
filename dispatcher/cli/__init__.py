"""``dispatcher``: the command line for operators and staff.

The click group is here; each command group is a module of its own, added to it below.
"""

from __future__ import annotations

import logging
import sys

import click

from dispatcher.cli import (
    check,
    controls,
    db,
    log,
    overview,
    preview,
    proof,
    run,
    supporters,
    users,
    web,
    why,
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr.")
def main(verbose: bool) -> None:
    """Send supporters' letters to the targets of urgent actions, by email (and fax)."""
    # Libraries stay at WARNING unless -v: fontTools alone logs thousands of INFO lines a fax run.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dispatcher").setLevel(logging.DEBUG if verbose else logging.INFO)


for command in (
    run.run,
    check.check,
    overview.actions,
    overview.queue,
    why.why_command,
    log.send_log,
    preview.preview,
    proof.proof,
    *controls.COMMANDS,
    supporters.supporters,
    web.web,
    users.users,
    db.db,
):
    main.add_command(command)
