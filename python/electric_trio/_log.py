"""Structured log lines: ``ts=<UTC time> level=info component=service msg="..." key=value``.

Built on the standard :mod:`logging` package, so every module may log through
:func:`get_logger` (fields as keyword arguments) or plain ``logging.getLogger(__name__)``; the
lines come out in the same logfmt shape once :func:`configure_logging` has run.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import IO, Any

__all__ = ["LEVELS", "Logger", "configure_logging", "get_logger"]

NOTICE = 25

#: ``LOG_LEVEL`` values (server-behaviour.md §11, aliases included) -> :mod:`logging` levels.
LEVELS: dict[str, int] = {
    "emergency": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "notice": NOTICE,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    NOTICE: "notice",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_PACKAGE_PREFIX = "electric_trio."
_HANDLER_NAME = "electric-trio"


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _component(logger_name: str) -> str:
    """``electric_trio.http._server`` -> ``http``: our package prefix and private modules go."""
    parts = logger_name.removeprefix(_PACKAGE_PREFIX).split(".")
    while len(parts) > 1 and parts[-1].startswith("_"):
        parts.pop()
    return ".".join(parts)


class LogfmtFormatter(logging.Formatter):
    """One line per record; exception tracebacks are kept on the line, newlines escaped."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        level = _NAMES.get(record.levelno, record.levelname.lower())
        component = _component(record.name)
        parts = [
            f"ts={ts.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}",
            f"level={level}",
            f"component={_quote(component)}",
            f"msg={_quote(record.getMessage())}",
        ]
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"traceback={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class Logger:
    """A logger taking structured fields as keyword arguments: ``log.info("msg", port=5133)``."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, exc_info=exc_info, extra={"fields": fields}, stacklevel=3)

    def debug(self, msg: str, /, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, /, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def notice(self, msg: str, /, **fields: Any) -> None:
        self._log(NOTICE, msg, fields)

    def warning(self, msg: str, /, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, /, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, /, **fields: Any) -> None:
        """Logs at error level with the traceback of the exception being handled."""
        self._log(logging.ERROR, msg, fields, exc_info=True)

    def is_enabled_for(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def get_logger(name: str) -> Logger:
    """The structured logger for a module (pass ``__name__``)."""
    return Logger(logging.getLogger(name))


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Sends every log record at ``level`` (a ``LOG_LEVEL`` value) and above to ``stream``
    (stderr by default) as logfmt lines. Calling it again replaces the previous setup."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
