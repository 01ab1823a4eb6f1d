"""``dispatcher preview``: the letter an action would send to one target, or its fax PDF."""

from __future__ import annotations

from pathlib import Path

import click

from dispatcher import capabilities
from dispatcher.actions.model import Action, Target
from dispatcher.actions.planner import effective
from dispatcher.cli.context import Context, pass_ctx
from dispatcher.letters import faxpdf
from dispatcher.letters.render import SAMPLE_SIGNER, Letter, Renderer, RenderError
from dispatcher.letters.variants import FIRST
from dispatcher.models import Signer
from dispatcher.sending.runtime import utcnow


@click.command()
@click.argument("action_id")
@click.option("--target", "target_id", required=True, help="Target id.")
@click.option("--lang", "language", help="Language (default: as the dispatcher would choose).")
@click.option(
    "--variant",
    help="Variant: a (<lang>.j2), b (<lang>.b.j2) … (default: the supporter's with --as, else a).",
)
@click.option("--as", "signer_email", help="Render as this imported supporter (default: a sample signer).")
@click.option("--channel", type=click.Choice(list(capabilities.KINDS)), default="email", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --channel fax: the PDF file.",
)
@pass_ctx
def preview(
    ctx: Context,
    action_id: str,
    target_id: str,
    language: str | None,
    variant: str | None,
    signer_email: str | None,
    channel: str,
    output: Path | None,
) -> None:
    """Print the letter ACTION_ID would send to one target (or write it as a fax PDF)."""
    action = ctx.action(action_id)
    try:
        target = action.target(target_id)
    except KeyError:
        raise click.ClickException(
            f"{action_id} has no target {target_id!r} (targets: {', '.join(t.id for t in action.targets)})"
        ) from None
    renderer = Renderer(ctx.settings.templates_dir)
    language = language or renderer.language_for(action, target)
    if language is None:
        raise click.ClickException(f"no template for {target_id} in any of its or the action's languages")
    signer = _signer(ctx, signer_email)
    if signer is SAMPLE_SIGNER and variant is None:
        variant = FIRST  # the sample signer's own variant would be an arbitrary one
    now = utcnow()
    in_force = effective(action, ctx.store.action_states().get(action.id), now).deadline
    try:
        letter = renderer.render(action, target, language, signer, now.date(), in_force, variant)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from exc
    kind = capabilities.of(channel)
    if kind.pdf:
        _write_fax(action, target, letter, signer, output, ctx.settings.fax_font)
        return
    click.echo(f"To: {target.name} <{getattr(target, kind.address) or '-'}>")
    copies = [f"{c.name} <{getattr(c, kind.address)}>" for c in action.copies(channel)] if kind.copies else []
    if copies:
        click.echo(f"Cc: {', '.join(copies)}")
    named = renderer.variants(action.templates, letter.language)
    click.echo(f"Subject: {letter.subject}\nLanguage: {letter.language}")
    if len(named) > 1:
        click.echo(f"Variant: {letter.variant} (of {', '.join(named)})")
    click.echo()
    click.echo(letter.body)


def _signer(ctx: Context, email: str | None) -> Signer:
    if not email:
        return SAMPLE_SIGNER
    found = ctx.store.find_signer(email)
    if found is None:
        raise click.ClickException(f"no supporter {email}")
    return found


def _write_fax(
    action: Action, target: Target, letter: Letter, signer: Signer, output: Path | None, font: Path | None
) -> None:
    if output is None:
        raise click.ClickException("--channel fax writes a PDF: give --output FILE.pdf")
    if target.fax is None:
        raise click.ClickException(f"{target.id} has no fax number")
    try:
        found = faxpdf.find_font(font)
    except faxpdf.FontMissing as exc:
        raise click.ClickException(str(exc)) from None
    head = faxpdf.letterhead(action, target, signer, letter.language, utcnow().date())
    document = faxpdf.letter_pdf(letter, head, found)
    output.write_bytes(document.data)
    click.echo(f"{output}: fax to {head.to_fax}, {document.pages} page(s), {head.paper}, {letter.language}")
