"""The HTTP edge (conf/gunicorn.conf.py): gunicorn's logger, and its gevent worker's answers to malformed requests.

``GunicornLogger`` escapes every request-derived field of the access log and makes every line of the
error and access logs safe (``logs``). gunicorn parses the request line and headers before the
application sees them and answers a malformed or oversized one itself; ``JsonErrorGeventWorker``
answers it as every other error is answered, ``{"success": false, "error": "..."}``, saying what was
wrong without echoing what was sent. The worker's streams rest while they wait (``server.gevent_worker``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from ssl import SSLError
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger
from gunicorn.http import errors as http
from gunicorn.http.wsgi import Response, default_environ

from flexgate_stream.logs import SafeFormatter, safe
from flexgate_stream.server.gevent_worker import StreamingGeventWorker

# Checked in order: the first class the error is an instance of gives status, reason and message.
CLIENT_ERRORS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str, str], ...] = (
    ((http.InvalidResponseHeader, http.InvalidResponseHeaderName), 500, "Internal Server Error",
     "internal error; the server log has the details."),
    (http.LimitRequestLine, 414, "URI Too Long", "the request line is too long (at most {line} bytes)."),
    (http.LimitRequestHeaders, 431, "Request Header Fields Too Large",
     "the request headers are too many or too large (at most {fields} fields of {field_size} bytes)."),
    ((http.InvalidRequestLine, http.InvalidRequestMethod, http.InvalidHTTPVersion, http.InvalidH2CPreface), 400,
     "Bad Request", "the request line is malformed: send METHOD /path HTTP/1.1."),
    ((http.InvalidHeader, http.InvalidHeaderName, http.ObsoleteFolding, http.InvalidSchemeHeaders), 400,
     "Bad Request", "a request header is malformed (a bad name, value or Content-Length)."),
    ((http.InvalidChunkSize, http.ChunkMissingTerminator, http.InvalidChunkExtension), 400, "Bad Request",
     "the chunked request body is malformed."),
    (http.UnsupportedTransferCoding, 501, "Not Implemented", "the Transfer-Encoding is not supported; use chunked."),
    (http.ExpectationFailed, 417, "Expectation Failed", "the Expect header is not supported."),
    ((http.ForbiddenProxyRequest, SSLError), 403, "Forbidden", "the request is forbidden."),
    ((http.InvalidProxyLine, http.ConfigurationProblem, http.ParseException), 400, "Bad Request",
     "the request is malformed."),
)


# The access log atoms computed as gunicorn's Logger.atoms computes them, for a format that uses no others.
SIMPLE_ATOMS: dict[str, Callable[[Any, dict[str, Any], timedelta], Any]] = {
    "h": lambda resp, environ, took: environ.get("REMOTE_ADDR", "-"),
    "m": lambda resp, environ, took: environ.get("REQUEST_METHOD"),
    "U": lambda resp, environ, took: environ.get("PATH_INFO"),
    "q": lambda resp, environ, took: environ.get("QUERY_STRING"),
    "H": lambda resp, environ, took: environ.get("SERVER_PROTOCOL"),
    "s": lambda resp, environ, took: (resp.status.split(None, 1)[0] if isinstance(resp.status, str)
                                      else resp.status),
    "b": lambda resp, environ, took: getattr(resp, "sent", None) is not None and str(resp.sent) or "-",
    "f": lambda resp, environ, took: environ.get("HTTP_REFERER", "-"),
    "a": lambda resp, environ, took: environ.get("HTTP_USER_AGENT", "-"),
    "M": lambda resp, environ, took: took.seconds * 1000 + int(took.microseconds / 1000),
    "D": lambda resp, environ, took: took.seconds * 1000000 + took.microseconds,
}

OWN_ATOMS = frozenset("sbMD")  # status, bytes sent, times: the server's own numbers, nothing to escape or redact


class JsonErrorGeventWorker(StreamingGeventWorker):
    """conf/gunicorn.conf.py ``worker_class``: gevent with resting streams, gunicorn's own error pages as JSON,
    and a stream dropped for not reading (FLEXGATE_SEND_TIMEOUT) told in one line instead of a traceback."""

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            # The write to a client blocked past the socket's timeout (set by the stream views): the response
            # iterator is closed by now, so the stream is released; gunicorn closes the connection.
            self.log.info("web: dropped a client that stopped reading (%s %s)", req.method, req.path)
            raise StopIteration from None

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        started = datetime.now()
        addr = addr or ("", -1)
        status, reason, message = self.describe(exc)
        if status >= 500:
            self.log.exception("web: error handling a request")
        else:
            # The exception's text holds what the client sent: the log's formatter escapes it and drops tokens.
            self.log.warning("web: refused a malformed request from %s (%s: %s)", addr[0], type(exc).__name__, exc)
        body = json.dumps({"success": False, "error": message}).encode()
        req = req or getattr(exc, "req", None)
        if req is not None and hasattr(req, "headers"):
            self.log_refused(req, client, addr, f"{status} {reason}", len(body), datetime.now() - started)
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            util.write_nonblock(client, head + body)
        except Exception:  # noqa: BLE001 - the client may be gone; nothing else to do
            self.log.debug("web: could not send the error answer")

    def log_refused(self, req: Any, client: Any, addr: tuple[str, int], status: str, length: int,
                    took: timedelta) -> None:
        """The access log line of a request gunicorn refused after reading its request line (a bad or duplicate
        Content-Length, say): its real method and path, escaped and redacted by the logger like any other."""
        environ = default_environ(req, client, self.cfg)
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
        environ["PATH_INFO"] = util.unquote_to_wsgi_str(req.path) if req.path else "-"
        agent = next((value for name, value in req.headers if name == "USER-AGENT"), None)
        if agent is not None:
            environ["HTTP_USER_AGENT"] = agent
        resp = Response(req, client, self.cfg)
        resp.status = status
        resp.response_length = resp.sent = length
        self.log.access(resp, req, environ, took)

    def describe(self, exc: BaseException) -> tuple[int, str, str]:
        """Status, reason phrase and JSON message for an error raised while reading a request."""
        limits = {"line": self.cfg.limit_request_line, "fields": self.cfg.limit_request_fields,
                  "field_size": self.cfg.limit_request_field_size}
        for kinds, status, reason, message in CLIENT_ERRORS:
            if isinstance(exc, kinds):
                return status, reason, message.format(**limits)
        return 500, "Internal Server Error", "internal error; the server log has the details."


class GunicornLogger(Logger):
    """gunicorn's logger with every field of the access log escaped and every handler's message made safe."""

    _format: str | None = None  # the access log format whose atoms ``_atoms`` holds
    _atoms: frozenset[str] = frozenset()

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        # Only the atoms the access log format names are escaped (and kept): gunicorn's atoms also hold every
        # request header, response header and environ entry, and escaping them all was most of a line's cost.
        used = self.format_atoms()
        if used <= SIMPLE_ATOMS.keys():  # the default format: built here, without gunicorn's every-field dict
            found = {key: SIMPLE_ATOMS[key](resp, environ, request_time) if key in OWN_ATOMS
                     else safe(SIMPLE_ATOMS[key](resp, environ, request_time)) for key in used}
        else:
            found = {key: safe(value) for key, value in super().atoms(resp, req, environ, request_time).items()
                     if key in used}
        client = forwarded_client(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR", ""),
                                  self.cfg.forwarded_allow_ips)
        if client is not None:  # behind a trusted proxy: the address it saw (an IP address, so nothing to escape)
            found["h"] = client
        return found

    def format_atoms(self) -> frozenset[str]:
        """The atom names the access log format uses, lower-cased as gunicorn looks them up (e.g. ``{host}i``)."""
        log_format = self.cfg.access_log_format
        if self._format != log_format:
            self._format = log_format
            names = re.findall(r"%\(([^)]*)\)", log_format)
            self._atoms = frozenset(n if len(n) == 1 else n.lower() for n in names)
        return self._atoms

    def _set_handler(self, log: logging.Logger, output: str | None, fmt: logging.Formatter,
                     stream: Any = None) -> None:
        super()._set_handler(log, output, SafeFormatter(fmt._fmt, fmt.datefmt), stream)


def forwarded_client(peer: str, forwarded_for: str, trusted: list[str]) -> str | None:
    """The client address a trusted ``peer`` forwarded (the last X-Forwarded-For entry), or None."""
    if not forwarded_for or not _trusted(peer, trusted):
        return None
    last = forwarded_for.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


def _trusted(peer: str, trusted: list[str]) -> bool:
    if "*" in trusted:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False
