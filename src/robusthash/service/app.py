"""``robusthash serve``: the reference database over HTTP (FastAPI), and a small page.

A :class:`~robusthash.db.ReferenceDB` is used by one thread at a time: the app
(:class:`~robusthash.service.state.Service`) lends each query one of ``--readers`` of them
(each with its own connection and indexes), and writes go through a writer of their own;
decoding and hashing, which take most of a request's time, need none and run in parallel. The routes are in
:mod:`robusthash.service.routes`, one module per resource. Authentication, the rate
limit and the body size limit are enforced in front of the app
(:mod:`robusthash.service.gate`). Every error answers ``{"detail": "..."}`` naming the
input at fault; a database that is locked or unreachable (:class:`~robusthash.db.StoreUnavailable`)
answers 503. See docs/service.md.
"""

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from .. import __version__
from ..db import StoreUnavailable
from .config import ServiceConfig
from .gate import RequestGate
from .routes import API_PREFIX, PUBLIC_PATHS, health, images, page, queries
from .state import Service

DOCS_FILES = "/docs-files"  # Swagger UI's scripts and styles, from the package


def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """A locked or unreachable database is the server's condition, not the request's fault.
    The driver's words go to the server's log only: they can name hosts, users and files."""
    logging.getLogger("robusthash.service").warning("database busy or unavailable: %s", exc)
    return JSONResponse({"detail": "database busy or unavailable; retry later"}, status_code=503,
                        headers={"Retry-After": "5"})


def create_app(config: ServiceConfig) -> FastAPI:
    """The service for one database. Opens it now, so a bad URL fails here, not later."""
    from ..runtime import one_query_at_a_time

    # Queries arrive one at a time from many threads.
    one_query_at_a_time()
    service = Service(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="robusthash",
        version=__version__,
        summary="Register original images; recognise their (attacked) copies by robust hashes.",
        description=(
            "Every `/v1` endpoint except `/v1/health` needs an API key, in the `X-API-Key` header or as "
            "`Authorization: Bearer <key>`. Limits: request body "
            f"{config.max_upload_bytes:,} bytes (413), image {config.max_pixels:,} pixels (422, refused before "
            f"decoding), {config.rate_limit or 'unlimited'} requests per minute per key (429 with Retry-After). "
            'Errors are `{"detail": ...}` naming the input at fault.'
        ),
        lifespan=lifespan,
        # /docs is served below from the package's own copy of Swagger UI; FastAPI's
        # default pages load their scripts from a CDN (and ReDoc's is not shipped).
        docs_url=None,
        redoc_url=None,
    )
    _add_api_docs(app)
    app.state.service = service
    app.add_exception_handler(StoreUnavailable, _database_unavailable)
    for routes in (images, queries, health):
        app.include_router(routes.router(service))
    page.add_page(app)
    app.add_middleware(
        RequestGate, api_keys=config.api_keys, allow_anonymous=config.allow_anonymous, rate_limit=config.rate_limit,
        max_body_bytes=config.max_upload_bytes,
        is_protected=lambda path: path.startswith(f"{API_PREFIX}/") and path not in PUBLIC_PATHS,
    )
    return app


def _add_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its files from swagger-ui-bundle (installed with the serve
    extra): nothing is fetched from elsewhere, so the docs work on a closed network."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_FILES, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                                   swagger_js_url=f"{DOCS_FILES}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_FILES}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_FILES}/favicon-32x32.png")


__all__ = ["ServiceConfig", "create_app"]
