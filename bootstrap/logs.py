"""structlog set-up: JSON lines in production, readable lines on a terminal.

Request context (endpoint, issuer, request id) is bound with :mod:`bootstrap.log_context` by the
adapters, so every line of a request carries it.
"""

from __future__ import annotations

import logging
import sys

import structlog

from . import log_context


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Configure structlog and the standard library root logger once per process."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    processors: list[structlog.typing.Processor] = [
        log_context.merge,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info if use_json else structlog.processors.ExceptionPrettyPrinter(),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aiocoap and asyncpg log through the standard library; keep them quiet unless debugging.
    logging.basicConfig(
        level=logging.WARNING if numeric > logging.DEBUG else logging.DEBUG, stream=sys.stderr
    )
