"""One settings object, filled once from the environment.

This module is the only code in the project that reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flexgate_stream.errors import ConfigError

DEFAULT_NATS = "nats://127.0.0.1:4222"
NATS_SCHEMES = {"nats", "tls", "ws", "wss"}
# Every connection pings NATS this often, and calls it lost when this many pings in a row go unanswered: a
# server that hangs (stopped, or its host frozen) is noticed within 2-3 intervals, 4-6 s, instead of nats-py's
# default of 4-6 minutes. A live server answers a PING within milliseconds.
NATS_PING_SECONDS = 2
NATS_MAX_OUTSTANDING_PINGS = 2

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Settings:
    """Everything the web app, the worker and the CLI may configure."""

    database_url: str | None = None
    nats_servers: tuple[str, ...] = (DEFAULT_NATS,)
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    port: int = 8000
    bind_host: str | None = None  # FLEXGATE_BIND; gunicorn then listens on 0.0.0.0, make run on 127.0.0.1
    web_concurrency: int = 2
    requests_timezone: str = "UTC"
    tick_seconds: float = 5.0
    stream_replicas: int = 1
    top_routes: int = 20
    max_routes: int = 1000  # distinct route labels tracked over 24 h; beyond them requests count under "(overflow)"
    max_upstreams: int = 200
    route_patterns: tuple[str, ...] = ()  # FLEXGATE_ROUTE_PATTERNS, for a gateway without a routes table
    alert_rules_file: str | None = None
    alert_overrides: str | None = None
    api_tokens: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    metrics_public: bool = True
    max_clients: int = 10000
    heartbeat_seconds: float = 30.0
    retry_ms: int = 3000
    client_queue: int = 64
    send_timeout_seconds: float = 30.0
    send_buffer_bytes: int = 65536  # SO_SNDBUF of a stream's socket: one summary snapshot at its 64 KiB cap
    events_open: bool = False  # POST /api/events without FLEXGATE_API_TOKENS
    body_timeout_seconds: float = 5.0
    max_route_feeds: int = 100
    prometheus_multiproc_dir: str | None = None
    log_level: str = "INFO"
    data_dir: Path = field(default_factory=lambda: Path("var"))
    nats_configured: bool = False  # NATS_SERVERS or NATS_URL was given (make run then starts no nats-server)
    demo: bool | None = None  # make run: demo traffic; None = on only with the embedded database
    demo_rps: float = 50.0

    @property
    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` built from the credential and TLS settings, with hang detection."""
        opts: dict[str, Any] = {"servers": list(self.nats_servers), "ping_interval": NATS_PING_SECONDS,
                                "max_outstanding_pings": NATS_MAX_OUTSTANDING_PINGS}
        if self.nats_user:
            opts["user"] = self.nats_user
            opts["password"] = self.nats_password or ""
        if self.nats_token:
            opts["token"] = self.nats_token
        if self.nats_creds:
            opts["user_credentials"] = self.nats_creds
        if self.nats_tls_ca or self.nats_tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=self.nats_tls_ca)
            if self.nats_tls_cert:
                ctx.load_cert_chain(self.nats_tls_cert, self.nats_tls_key)
            opts["tls"] = ctx
        return opts

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, for the logs to redact: API tokens, NATS credentials, the database password."""
        password = urlsplit(self.database_url).password if self.database_url else None
        found = (*self.api_tokens, self.nats_token, self.nats_password, password)
        return tuple(value for value in found if value)

    def require_database(self) -> str:
        """Return DATABASE_URL, or raise ConfigError when it is not set."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set: give it a postgresql:// URL of the request log database.")
        return self.database_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
        env = _Env(os.environ if environ is None else environ)
        return cls(
            database_url=env.database_url("DATABASE_URL"),
            nats_servers=env.nats_servers(),
            nats_user=env.text("NATS_USER"),
            nats_password=env.text("NATS_PASSWORD"),
            nats_token=env.text("NATS_TOKEN"),
            nats_creds=env.path("NATS_CREDS"),
            nats_tls_ca=env.path("NATS_TLS_CA"),
            nats_tls_cert=env.path("NATS_TLS_CERT"),
            nats_tls_key=env.path("NATS_TLS_KEY"),
            port=env.integer("PORT", 8000, low=1, high=65535),
            bind_host=env.host("FLEXGATE_BIND"),
            web_concurrency=env.integer("WEB_CONCURRENCY", 2, low=1, high=256),
            requests_timezone=env.timezone("FLEXGATE_REQUESTS_TIMEZONE", "UTC"),
            tick_seconds=env.number("FLEXGATE_TICK_SECONDS", 5.0, low=0.5, high=3600),
            stream_replicas=env.integer("FLEXGATE_STREAM_REPLICAS", 1, low=1, high=5),
            top_routes=env.integer("FLEXGATE_TOP_ROUTES", 20, low=1, high=500),
            max_routes=env.integer("FLEXGATE_MAX_ROUTES", 1000, low=1, high=100_000),
            max_upstreams=env.integer("FLEXGATE_MAX_UPSTREAMS", 200, low=1, high=100_000),
            route_patterns=env.patterns("FLEXGATE_ROUTE_PATTERNS"),
            alert_rules_file=env.path("FLEXGATE_ALERT_RULES"),
            alert_overrides=env.text("FLEXGATE_ALERT_OVERRIDES"),
            api_tokens=env.csv("FLEXGATE_API_TOKENS"),
            cors_origins=env.csv("FLEXGATE_CORS_ORIGINS"),
            metrics_public=env.flag("FLEXGATE_METRICS_PUBLIC", True),
            max_clients=env.integer("FLEXGATE_MAX_CLIENTS", 10000, low=1, high=1_000_000),
            heartbeat_seconds=env.number("FLEXGATE_HEARTBEAT_SECONDS", 30.0, low=0.1, high=3600),
            retry_ms=env.integer("FLEXGATE_RETRY_MS", 3000, low=100, high=600_000),
            client_queue=env.integer("FLEXGATE_CLIENT_QUEUE", 64, low=1, high=100_000),
            send_timeout_seconds=env.number("FLEXGATE_SEND_TIMEOUT", 30.0, low=1, high=3600),
            send_buffer_bytes=env.integer("FLEXGATE_SEND_BUFFER", 65536, low=4096, high=4 * 1024 * 1024),
            events_open=env.flag("FLEXGATE_EVENTS_OPEN", False),
            body_timeout_seconds=env.number("FLEXGATE_BODY_TIMEOUT", 5.0, low=0.1, high=300),
            max_route_feeds=env.integer("FLEXGATE_MAX_ROUTE_FEEDS", 100, low=1, high=100_000),
            prometheus_multiproc_dir=env.directory("PROMETHEUS_MULTIPROC_DIR"),
            log_level=env.choice("FLEXGATE_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            data_dir=Path(env.text("FLEXGATE_DATA_DIR") or "var"),
            nats_configured=bool(env.text("NATS_SERVERS") or env.text("NATS_URL")),
            demo=env.boolean("FLEXGATE_DEMO", None),
            demo_rps=env.number("FLEXGATE_DEMO_RPS", 50.0, low=0.1, high=100_000),
        )


def load_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings; on a bad value print one sentence and exit with status 2."""
    try:
        return Settings.from_env(environ)
    except ConfigError as exc:
        print(f"flexgate-stream: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class _Env:
    """Typed reads of environment variables; each failure names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}.")
        return value

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}.") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.boolean(name, default)
        return default if value is None else value

    def boolean(self, name: str, default: bool | None) -> bool | None:
        raw = self.text(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}.")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.upper() not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}.")
        return raw.upper()

    def host(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return str(ipaddress.ip_address(raw.strip("[]")))
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(raw):
            raise ConfigError(f"{name} must be an IP address or a host name to listen on, got {raw!r}.")
        return raw

    def csv(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def patterns(self, name: str) -> tuple[str, ...]:
        values = self.csv(name)
        for value in values:
            if not value.startswith("/") or "?" in value or len(value) > 500:
                raise ConfigError(f"{name} must be a comma list of route patterns such as /api/users/:id or /api/*,"
                                  f" each starting with / (at most 500 characters, no query string), got {value!r}.")
        return values

    def path(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not Path(raw).is_file():
            raise ConfigError(f"{name} names {raw!r}, which is not a readable file.")
        return raw

    def directory(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is not None and not Path(raw).is_dir():
            raise ConfigError(f"{name} names {raw!r}, which is not a directory.")
        return raw

    def timezone(self, name: str, default: str) -> str:
        raw = self.text(name) or default
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{name} must be an IANA time zone such as UTC or Europe/Berlin, got {raw!r}.") from None
        return raw

    def database_url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("postgres", "postgresql") or not (parts.hostname or "host=" in parts.query):
            raise ConfigError(f"{name} must be a postgresql://user@host:port/database URL, got {_redact(raw)!r}.")
        return raw

    def nats_servers(self) -> tuple[str, ...]:
        name = "NATS_SERVERS" if self.text("NATS_SERVERS") else "NATS_URL"
        urls = self.csv(name)
        if not urls:
            return (DEFAULT_NATS,)
        for url in urls:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            try:
                _ = parts.port
            except ValueError:
                raise ConfigError(f"{name} has a bad port in {_redact(url)!r}.") from None
            if parts.scheme not in NATS_SCHEMES or not parts.hostname:
                raise ConfigError(f"{name} must be a comma list of nats://host:port URLs, got {_redact(url)!r}.")
        return tuple(u if "://" in u else f"nats://{u}" for u in urls)


def _redact(url: str) -> str:
    """Hide a password in a URL before it is echoed in an error."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url
