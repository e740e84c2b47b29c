"""The server's access log without secrets: a key sent where it does not belong (in the
query string, where the service refuses it) must not end up in a log file that more
people read than hold keys."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

# Query parameters whose values are secrets, whatever a client meant by them.
SECRET_PARAMETERS = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access[-_]?token|password|secret)=)[^&#\s]*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` (a request target) with the values of secret-looking query parameters replaced."""
    return SECRET_PARAMETERS.sub(lambda m: m.group(1) + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites uvicorn's access-log records (their arguments: client, method, target,
    HTTP version, status) so that the target's secrets are not written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with :class:`RedactSecrets` on its access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": f"{__name__}.RedactSecrets"}
    config["handlers"]["access"].setdefault("filters", []).append("redact_secrets")
    return config
