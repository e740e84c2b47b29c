"""``robusthash serve``: the database over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import _method_names, err, needs_extra
from .db import DB_OPTION, _open_db

# An idle kept-alive connection is closed after this long (uvicorn's default, stated).
KEEP_ALIVE_SECONDS = 5


def serve(
    db: str = DB_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    api_keys: List[str] = typer.Option(
        [], "--api-key", envvar="ROBUSTHASH_API_KEY", show_default=False,
        help="accepted API key; repeat for several [env: ROBUSTHASH_API_KEY, space-separated; "
             "prefer it: command lines are visible to other users]",
    ),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without API keys (anyone who can connect may "
                                                          "register, query and delete)"),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="default: the database's methods"),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.001, help="largest request body, in MiB"),
    max_megapixels: float = typer.Option(50.0, "--max-megapixels", min=0.001,
                                         help="largest image (width × height), checked before decoding"),
    rate_limit: int = typer.Option(120, "--rate-limit", min=0, help="requests per minute per API key; 0: no limit"),
    thumbnails: Optional[Path] = typer.Option(None, "--thumbnails",
                                              help="folder for thumbnails of uploads (default: DB.thumbnails/ "
                                                   "for SQLite, none for PostgreSQL)"),
    source_roots: list[Path] = typer.Option(
        [], "--source-root",
        help="a folder holding files registered with 'robusthash db add', whose thumbnails and comparator copies may "
             "be made from them (repeat for several); a registered source outside these is never opened"),
    trusted_proxies: Optional[str] = typer.Option(
        None, "--trusted-proxies",
        help="comma-separated addresses of reverse proxies whose X-Forwarded-For names the client (the per-address "
             "limits then count the client, not the proxy); default: no proxy headers are believed"),
    max_connections: int = typer.Option(512, "--max-connections", min=1,
                                        help="open connections and requests at once; beyond them: 503"),
    max_decodes: int = typer.Option(2, "--max-decodes", min=1,
                                    help="uploads decoded and hashed at once, each up to about 0.3 GB at the pixel "
                                         "limit; others wait their turn (--decode-wait), then 503"),
    decode_wait: float = typer.Option(10.0, "--decode-wait", min=0.0,
                                      help="seconds an upload waits for its turn to be decoded before a 503"),
    readers: int = typer.Option(2, "--readers", min=1,
                                help="queries judged at once, each with a database connection and a copy of the "
                                     "indexes of its own (memory: the indexes once per reader)"),
    head_timeout: float = typer.Option(10.0, "--head-timeout", min=0.1,
                                       help="seconds a connection has to send a complete request head (after "
                                            "opening, or after a response) before it is closed"),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1,
                                       help="seconds a request body may go without a new byte before its "
                                            "connection is closed (between reads: a slow upload still gets through)"),
):
    """Serve the database over HTTP: the /v1 API and a page to drop an image on.

    API docs at /docs, the page at /, details in docs/service.md."""
    needs_extra("serve", "fastapi", "uvicorn", what="robusthash serve")
    import uvicorn

    from ..service import ServiceConfig, create_app
    from ..service.access_log import log_config
    from ..service.connections import with_deadlines
    from ..service.memory import keep_large_blocks_mapped

    keys = tuple(k for entry in api_keys for k in entry.split() if k)
    if not keys and not no_auth:
        raise typer.BadParameter("give an API key (--api-key or $ROBUSTHASH_API_KEY), or --no-auth to serve "
                                 "without one", param_hint="--api-key")
    if keys and no_auth:
        raise typer.BadParameter("--no-auth and an API key (--api-key or $ROBUSTHASH_API_KEY) contradict each "
                                 "other; give one", param_hint="--no-auth")
    if no_auth:
        err.print("warning: --no-auth: anyone who can connect may register, query and delete images", markup=False)
    _open_db(db, methods).close()  # the db commands' checks and messages, before the server starts
    try:
        config = ServiceConfig(
            db=db, methods=tuple(_method_names(methods)) if methods else None,
            api_keys=keys, allow_anonymous=no_auth, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=int(max_megapixels * 1_000_000), rate_limit=rate_limit, thumbnail_dir=thumbnails,
            source_roots=tuple(source_roots),
            max_decodes=max_decodes, decode_wait=decode_wait, readers=readers,
        )
        service = create_app(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    keep_large_blocks_mapped()
    err.print(f"serving {db} on http://{host}:{port}/ (API docs at /docs)", markup=False)
    # Proxy headers are believed only from the proxies named: otherwise any client could
    # claim another address in X-Forwarded-For and escape the per-address limits.
    uvicorn.run(service, host=host, port=port, log_level="info", server_header=False, log_config=log_config(),
                proxy_headers=trusted_proxies is not None, forwarded_allow_ips=trusted_proxies or "",
                limit_concurrency=max_connections, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                http=with_deadlines(head_timeout, body_timeout))
