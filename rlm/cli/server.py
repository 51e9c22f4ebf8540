"""`rlm serve`: the RLM as an OpenAI-compatible model."""

from __future__ import annotations

from typing import Any

import click

from rlm.cli.common import fail
from rlm.cli.options import engine_options, settings_from


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: any free one).")
@click.option(
    "--serve-key",
    envvar="RLM_SERVE_KEY",
    help="Bearer key clients must send (env RLM_SERVE_KEY); required unless listening on loopback only.",
)
@click.option(
    "--context-root",
    "context_roots",
    multiple=True,
    type=click.Path(file_okay=False, exists=True),
    help="Folder whose files requests may name as context (repeatable); nothing else on disk is reachable.",
)
@click.option("--max-body-mb", default=32.0, show_default=True, type=float, help="Largest request or upload.")
@click.option("--max-concurrent", default=8, show_default=True, type=int, help="Runs at once; more get 503.")
@click.option("--max-uploads-mb", default=512.0, show_default=True, type=float, help="Uploaded files held, in all.")
@click.option("--upload-ttl", default=3600.0, show_default=True, type=float, help="Seconds an uploaded file is kept.")
@engine_options
def serve(
    host: str,
    port: int,
    serve_key: str | None,
    context_roots: tuple[str, ...],
    max_body_mb: float,
    max_concurrent: int,
    max_uploads_mb: float,
    upload_ttl: float,
    fallbacks: tuple[str, ...],
    **options: Any,
) -> None:
    """Serve the RLM as an OpenAI-compatible model (POST /v1/chat/completions, /v1/files, /v1/models).

    Engine limits (--max-cost, --timeout, ...) are caps: a request's own "rlm" limits may only lower them.
    Without --timeout a run stops after 600 s."""
    from pathlib import Path

    from rlm.errors import ConfigError
    from rlm.loop import run as run_loop
    from rlm.serve import RLMService, ServeOptions, build_engine, check_exposure, serve_forever

    serve_options = ServeOptions(
        api_key=serve_key or None,
        context_roots=[Path(root) for root in context_roots],
        max_body_bytes=int(max_body_mb * 2**20),
        max_concurrent=max_concurrent,
        max_upload_bytes=int(max_uploads_mb * 2**20),
        upload_ttl_s=upload_ttl,
    )
    try:
        check_exposure(host, serve_options)
        service = RLMService(build_engine(settings_from(fallbacks, options)), serve_options)
        run_loop(serve_forever(service, host, port, lambda line: click.echo(line, err=True)))
    except ConfigError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    except KeyboardInterrupt:
        click.echo("rlm serve: stopped", err=True)
