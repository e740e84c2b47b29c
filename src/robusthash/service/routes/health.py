"""The service itself: liveness (public) and statistics."""

import logging
from typing import Any

from fastapi import APIRouter, HTTPException

from ... import __version__
from ...db import StoreUnavailable
from ..models import ErrorOut, HealthOut
from ..state import Service
from . import API_PREFIX, protected_router


def router(service: Service) -> APIRouter:
    config = service.config
    protected = protected_router()

    @protected.get("/stats", tags=["service"], summary="Images, hashes per method, calibrations, limits")
    def stats() -> dict[str, Any]:
        with service.reading() as reader:
            stats = reader.stats()
        return {**stats, "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels,
                                    "rate_limit_per_minute": config.rate_limit, "max_k": config.max_k}}

    routes = APIRouter()
    routes.include_router(protected)

    @routes.get(f"{API_PREFIX}/health", response_model=HealthOut, tags=["service"],
                summary="Liveness (no API key needed)", responses={503: {"model": ErrorOut}})
    def health() -> dict[str, Any]:
        try:
            with service.reading() as reader:
                reader.store.ping()
        except StoreUnavailable as exc:  # an unreachable database is the answer, not a crash
            # Health answers anyone: the driver's words (hosts, users) go to the log only.
            logging.getLogger("robusthash.service").warning("health: database unavailable: %s", exc)
            raise HTTPException(503, "database unavailable") from None
        return {"status": "ok", "version": __version__}

    return routes
