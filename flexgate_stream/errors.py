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
