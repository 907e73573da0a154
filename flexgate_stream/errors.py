"""The error hierarchy: every error this package raises on purpose is a FlexgateError."""

from __future__ import annotations


class FlexgateError(Exception):
    """Root of the package's errors; the message says what happened and what to do."""


class ConfigError(FlexgateError):
    """A setting from the environment is missing or malformed."""


class DatabaseUnavailable(FlexgateError):
    """PostgreSQL could not be reached or refused the connection."""


class LocalStackError(FlexgateError):
    """An embedded server (PostgreSQL or nats-server) could not be started."""


class NatsUnavailable(FlexgateError):
    """NATS is not connected, or did not answer in time; the bridge keeps reconnecting."""


class RequestError(FlexgateError):
    """A request the web tier refuses; ``status`` is the HTTP status it answers with."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadInput(RequestError):
    """A parameter, header or body field is malformed or missing; the message names it."""


class Unauthorized(RequestError):
    """No valid API token was given."""

    status = 401


class Forbidden(RequestError):
    """The endpoint is closed under the current settings."""

    status = 403


class NotFound(RequestError):
    """What was asked for does not exist."""

    status = 404


class BodyTimeout(RequestError):
    """The client did not send its declared body in time."""

    status = 408


class UnsupportedMediaType(RequestError):
    """The body is not of the content type the endpoint accepts."""

    status = 415


class TooLarge(RequestError):
    """The request body is larger than the service accepts."""

    status = 413


class AtCapacity(RequestError):
    """This worker already serves its maximum number of streams."""

    status = 503
