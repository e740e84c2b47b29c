"""The service's routes, by resource: each module's ``router(service)`` is an APIRouter
over the shared :class:`~robusthash.service.state.Service`; ``create_app`` assembles them.

* :mod:`.images`: register, get, delete an image, its thumbnail
* :mod:`.queries`: query, explain
* :mod:`.health`: health (public), stats
* :mod:`.page`: the page at ``/`` and its static files

No ``from __future__ import annotations`` in these modules: FastAPI reads the routes'
annotations, and some refer to values local to ``router`` (the configured limits).
"""

from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, Path as PathParam
from fastapi.security import APIKeyHeader, HTTPBearer

from ..models import errors

API_PREFIX = "/v1"
PUBLIC_PATHS = (f"{API_PREFIX}/health",)
MAX_IMAGE_ID = 2**63 - 1

# Bounded above too: a larger number does not fit the databases' 64-bit ids.
ImageId = Annotated[int, PathParam(ge=1, le=MAX_IMAGE_ID, description="a registered image's id")]

# These declare the two ways of sending the key, so that /openapi.json and /docs know
# them; the check itself happens in the gate, before the body is read.
_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an accepted API key")
_bearer = HTTPBearer(auto_error=False, description="the same key as a bearer token")


def _documented_auth(_key: Annotated[Optional[str], Depends(_key_header)],
                     _token: Annotated[Any, Depends(_bearer)]) -> None:
    return None


def protected_router() -> APIRouter:
    """A router under /v1 whose routes need an API key (checked by the gate)."""
    return APIRouter(prefix=API_PREFIX, dependencies=[Depends(_documented_auth)], responses=errors(401, 413, 429))
