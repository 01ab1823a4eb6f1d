"""The letter as a target receives it, signed by a sample supporter (never a real one: viewers
do not see supporters' personal data): email as text, fax as the PDF it will be."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher import capabilities
from dispatcher.accounts import Role
from dispatcher.actions.model import Action, Target
from dispatcher.actions.planner import effective
from dispatcher.letters import faxpdf
from dispatcher.letters.render import SAMPLE_SIGNER, Letter, Renderer, RenderError
from dispatcher.letters.variants import FIRST, variants
from dispatcher.web.auth import requires
from dispatcher.web.context import Context, context
from dispatcher.web.pages import forbidden, render


def _letter(
    ctx: Context, action_id: str, target_id: str, language: str | None, variant: str
) -> tuple[Action, Target, Letter]:
    action = ctx.actions().get(action_id)
    if action is None:
        raise LookupError("no such action")
    target = next((t for t in action.targets if t.id == target_id), None)
    if target is None:
        raise LookupError("no such target")
    renderer = Renderer(ctx.settings.templates_dir)
    language = language or renderer.language_for(action, target)
    if language is None or language not in action.languages:
        raise LookupError("no template in that language")
    now = ctx.clock()
    in_force = effective(action, ctx.store.action_states().get(action.id), now).deadline
    letter = renderer.render(action, target, language, SAMPLE_SIGNER, now.date(), in_force, variant)
    return action, target, letter


def _fax(ctx: Context, action: Action, target: Target, letter: Letter) -> bytes:
    head = faxpdf.letterhead(action, target, SAMPLE_SIGNER, letter.language, ctx.clock().date())
    return faxpdf.letter_pdf(letter, head, faxpdf.find_font(ctx.settings.fax_font)).data


@requires(Role.VIEWER)
async def preview(request: Request) -> Response:
    ctx, q = context(request), request.query_params
    try:
        action, target, letter = await run_in_threadpool(
            _letter,
            ctx,
            request.path_params["action_id"],
            q.get("target", ""),
            q.get("lang") or None,
            q.get("variant") or FIRST,
        )
        if (kind := capabilities.KINDS.get(q.get("channel", ""))) and kind.pdf:
            if not getattr(target, kind.address):
                raise LookupError(f"this target has no {kind.noun}")
            pdf = await run_in_threadpool(_fax, ctx, action, target, letter)
            return Response(pdf, media_type="application/pdf", headers={"Cache-Control": "no-store"})
    except (LookupError, RenderError, faxpdf.FontMissing) as exc:
        return forbidden(request, str(exc), status=404)
    named = variants(ctx.settings.templates_dir, action.templates, letter.language)
    return render(request, "preview.html", action=action, target=target, letter=letter, variants=named)


routes = [Route("/actions/{action_id}/preview", preview)]
