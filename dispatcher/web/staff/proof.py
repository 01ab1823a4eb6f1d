"""The action page's "Send proof": every letter of the action to a staff address, as
``dispatcher proof`` sends it; staff only, rate-limited so that it cannot flood a mailbox."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.accounts import Role
from dispatcher.sending import proof as proofs
from dispatcher.web.auth import address, current_user, requires
from dispatcher.web.context import context
from dispatcher.web.pages import forbidden, render


@requires(Role.STAFF)
async def send_proof(request: Request) -> Response:
    ctx, user = context(request), await current_user(request)
    actions = await run_in_threadpool(ctx.actions)
    action = actions.get(request.path_params["action_id"])
    if action is None or user is None:
        return forbidden(request, "no such action", status=404)
    typed = str((await request.form()).get("to", "")).strip()
    try:
        to = proofs.recipient(typed, [action, *actions.values()])
    except proofs.ProofError as exc:
        return forbidden(request, str(exc), status=400)
    wait = max(ctx.proofs_by_user.blocked(user.name), ctx.proofs_to_address.blocked(to.lower()))
    if wait:
        return forbidden(request, f"too many proofs; try again in {int(wait) // 60 + 1} minutes", status=429)
    # Counted before sending: a proof the mail server refused halfway still sent some letters.
    ctx.proofs_by_user.hit(user.name)
    ctx.proofs_to_address.hit(to.lower())
    try:
        sent = await proofs.send(
            ctx.settings, ctx.store, action, to, user.name, address(request), ctx.clock()
        )
    except proofs.ProofError as exc:
        return forbidden(request, str(exc), status=409)
    return render(request, "proof.html", action=action, count=proofs.counted(sent), to=to)


routes = [Route("/actions/{action_id}/proof", send_proof, methods=["POST"])]
