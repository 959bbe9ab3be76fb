"""One line for an error that ends a `cts` command: the cause in the driver's or the system's words, never a secret
(passwords in URLs are masked, and the logging redaction applies), never a traceback (`--debug` shows it)."""

from __future__ import annotations

import re

from common.logs import redact

# user:password@ in any URL-like text (a DATABASE_URL quoted back by a library).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _clean(text: str) -> str:
    return redact(_URL_PASSWORD.sub(r"\g<scheme>:***@", _first_line(text)))


def describe_error(exc: BaseException) -> str:
    """What went wrong, in one line."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(exc, DBAPIError):
        orig = exc.orig
        args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
        if len(args) >= 2 and isinstance(args[0], int):  # MySQL drivers: (errno, message)
            detail = f"({args[0]}) {args[1]}"
        else:
            detail = str(orig) or type(orig).__name__
        return f"database error: {_clean(detail)}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {_clean(str(exc))}"
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}"
    if isinstance(exc, ConnectionError | TimeoutError | OSError):
        return f"{type(exc).__name__}: {_clean(str(exc))}" if str(exc) else type(exc).__name__
    message = _clean(str(exc))
    known = exc.__class__.__module__.split(".")[0] in ("cts", "common", "generator_svc", "executor_svc")
    if known and message:
        return message
    return f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
