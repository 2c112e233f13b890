"""Structured logs: one JSON object per line on stderr, for log shippers and `ray job logs`.

Only the project's loggers are configured; Ray's and the libraries' stay as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TextIO

ROOT = "obsrvr_ray"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def setup_json_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    logger = logging.getLogger(ROOT)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: object) -> None:
    """`event` is a short fixed name (chunk_committed, ...); the details go in fields."""
    logger.log(level, event, extra={"fields": fields})
