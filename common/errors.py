"""Domain errors. Raised by domain and repository code; mapped to gRPC status codes in one place
(common.interceptor.DomainErrorInterceptor). Messages are shown to clients: never put secrets in them."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every error a client may see."""


class InvalidArgumentError(DomainError):
    """The request itself is malformed (INVALID_ARGUMENT)."""


class NotFoundError(DomainError):
    """Something the request names does not exist (NOT_FOUND)."""


class FailedPreconditionError(DomainError):
    """The request is well formed but the system is not in a state to do it (FAILED_PRECONDITION)."""


class UnavailableError(DomainError):
    """A dependency (database, executor, exchange) cannot be reached right now (UNAVAILABLE)."""


class PermissionDeniedError(DomainError):
    """Credentials were refused by a dependency (PERMISSION_DENIED)."""


class ConfigError(Exception):
    """The environment does not describe a valid configuration. The message names the variable, never its value."""


class StartupError(Exception):
    """The service cannot start (missing model, bad credentials, ...). The message is printed as one line."""
