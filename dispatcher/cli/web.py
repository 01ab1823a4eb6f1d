"""``dispatcher web``: serve the web app."""

from __future__ import annotations

import click

from dispatcher.cli.context import Context, pass_ctx


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="Seconds a client has to send a request's headers before its connection is closed.",
)
@click.option(
    "--limit-concurrency",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Connections and requests at once; more are answered 503.",
)
@pass_ctx
def web(ctx: Context, host: str, port: int, header_timeout: float, limit_concurrency: int) -> None:
    """Serve the web app: the staff dashboard, supporters' opt-in and revoke pages, the CRM API,
    and fax providers' webhooks and the fax PDFs they fetch.

    Put it behind a TLS-terminating proxy at DISPATCHER_PUBLIC_URL: supporters' links and
    providers' webhooks use that URL. Accounts for the dashboard: dispatcher users add.
    """
    from dispatcher.web import app_for, server

    try:
        app = app_for(ctx.settings, ctx.store)
    except ValueError as exc:
        raise click.ClickException(f"settings: {exc}") from None
    if not ctx.settings.public_url:
        click.echo(
            "note: DISPATCHER_PUBLIC_URL is not set; providers cannot reach this app, and the "
            "opt-in pages take no sign-ups (their emailed links need the public URL)",
            err=True,
        )
    # Forwarded headers only from the proxies named in DISPATCHER_TRUSTED_PROXIES (client
    # addresses for rate limits and the audit log); webhook signatures always cover
    # DISPATCHER_PUBLIC_URL.
    proxies = ctx.settings.trusted_proxies.strip()
    server.run(app, host, port, proxies, header_timeout, limit_concurrency)
    ctx.store.close()
