"""Structured JSON logs on stderr: one object per line, with the service and cell.

Log records never carry tokens or message bodies; callers pass ids, never payloads.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service
        self._cell = os.environ.get("CELL_ID", "local")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "cell": self._cell,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("conn_id", "request_id", "user_id", "conversation_id", "code"):
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(service: str, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    # The cassandra driver is chatty at INFO about topology it handles by itself.
    logging.getLogger("cassandra").setLevel(logging.WARNING)
