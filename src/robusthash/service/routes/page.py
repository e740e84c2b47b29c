"""The page at ``/`` and its script, style and pictures under ``/static``."""

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# The page loads its own script, style and (blob:) previews, nothing from elsewhere.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


def add_page(app: FastAPI) -> None:
    static = resources.files("robusthash.service") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
