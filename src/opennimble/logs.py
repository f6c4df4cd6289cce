"""Logging: one line per event, plain text (the default) or JSON (``log_format = "json"``).

Events carry fields (``extra={"fields": {...}}``, see :func:`fields`): JSON lines hold them as
members, text lines end with them as ``key=value``.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

FORMATS = ("text", "json")


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra`` of a logging call whose event carries ``values``."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = getattr(record, "fields", {})
        if not extra:
            return line
        pairs = " ".join(f"{key}={value}" for key, value in extra.items() if value is not None)
        head, newline, rest = line.partition("\n")  # a traceback stays below the event's line
        return f"{head} {pairs}{newline}{rest}"


def setup(level: str, form: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
