"""Log lines, plain or JSON, each carrying the request id; the daemon's log file.

`logging_config(settings)` is gunicorn's `logconfig_dict`: one stderr handler
shared by the app's loggers, gunicorn's error log and its access log, so every
line has the same shape. A daemon's stdout and stderr are piped into
`python -m pensieve.logs FILE`, the one process that writes the log file and
rotates it by size (several writers rotating one file would race).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from flask import g, has_app_context

PLAIN_FORMAT = (
    "%(asctime)s [%(process)d] [%(levelname)s] [%(request_id)s] %(name)s: %(message)s"
)
# gunicorn's access line; the request id is the response's `request-id` header.
ACCESS_LOG_FORMAT = (
    '%(h)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s" request-id=%({request-id}o)s'
)
NO_REQUEST = "-"


def current_request_id(record: logging.LogRecord) -> str:
    """The id of the request a log line belongs to, or "-" outside requests."""
    if has_app_context() and (request_id := g.get("request_id")):
        return request_id
    # gunicorn's access lines are written after the request; their arguments
    # are gunicorn's atoms, which include the response headers.
    if isinstance(record.args, Mapping):
        return str(record.args.get("{request-id}o") or NO_REQUEST)
    return NO_REQUEST


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (put on handlers, not loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id(record)
        return True


class QuietHealthFilter(logging.Filter):
    """Drops the access lines of `/health` polls: monitors and `pensieve start
    --daemon` poll it every second (503 while the model loads), and what it
    reports is in its answer, not in its status line."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, Mapping) else {}
        return atoms.get("U") != "/health"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, request id, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", NO_REQUEST),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server (gunicorn's logconfig_dict)."""
    level = settings["LOG_LEVEL"].upper()
    formatter: dict[str, Any] = (
        {"()": JSONFormatter}
        if settings["LOG_FORMAT"] == "json"
        else {"format": PLAIN_FORMAT}
    )
    # gunicorn's loggers lose their own handlers and propagate to root's.
    gunicorn_logger = {"level": level, "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "quiet_health": {"()": QuietHealthFilter},
        },
        "formatters": {"pensieve": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "pensieve",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": gunicorn_logger,
            "gunicorn.access": {**gunicorn_logger, "filters": ["quiet_health"]},
        },
    }


def write_rotated(
    lines: Iterable[bytes], path: Path, *, max_bytes: int, backups: int
) -> None:
    """Append `lines` to `path`, rotating it to path.1 … path.N at `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=max(backups, 1), encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for line in lines:
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            handler.emit(logging.makeLogRecord({"msg": text}))
    finally:
        handler.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m pensieve.logs FILE`: copy stdin into a rotated log file."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-bytes", type=int, default=10 * 1024**2)
    parser.add_argument("--backups", type=int, default=3)
    args = parser.parse_args(argv)
    write_rotated(
        sys.stdin.buffer, args.path, max_bytes=args.max_bytes, backups=args.backups
    )


if __name__ == "__main__":
    main()
