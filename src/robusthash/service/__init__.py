"""``robusthash serve``: the reference database as an HTTP API and a small web page.
See docs/service.md."""

from .app import create_app
from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
