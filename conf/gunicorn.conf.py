"""gunicorn settings for the web process: gevent workers sized for thousands of open streams."""

import os
import shutil

from flexgate_stream import logs
from flexgate_stream.server import gunicorn_hooks
from flexgate_stream.settings import load_or_exit

_settings = load_or_exit()  # a bad environment stops the master with one sentence, exit 2
# The master's and (inherited on fork) every worker's log lines never carry a configured token, wherever a client
# put it: a malformed request line or header is logged before the application exists.
logs.add_secrets(_settings.secrets)

# prometheus-client chooses multiprocess mode from this variable when first imported: set it here,
# in the master, before any worker exists, so /metrics adds up all workers.
_metrics_dir, _own_metrics_dir = gunicorn_hooks.metrics_dir(_settings.prometheus_multiproc_dir)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

# gevent records each greenlet's spawning stack (about ten frame records) for its debugging tools: with one
# greenlet per open stream that is ~0.8 KB a stream for nothing. Read by gevent in each worker.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")

# Every interface (a PaaS routes to $PORT) unless FLEXGATE_BIND names one; make run sets 127.0.0.1.
_host = _settings.bind_host or "0.0.0.0"
bind = f"[{_host}]:{_settings.port}" if ":" in _host else f"{_host}:{_settings.port}"
workers = _settings.web_concurrency
# gunicorn's own request parser, chosen rather than left to what is installed ("auto" takes the gunicorn_h1c C
# extension when present): with the C parser a request refused for its Content-Length is no longer logged with its
# method and path, and the errors read differently; it would save about 5 % of a stream's opening
# (docs/performance.md, "Opening streams").
http_parser = "python"
# gevent, with gunicorn's own answers to malformed requests (400, 414, 431, ...) in the JSON error shape.
worker_class = "flexgate_stream.server.http_edge.JsonErrorGeventWorker"
# Each open SSE stream holds one connection: leave room above FLEXGATE_MAX_CLIENTS for plain requests.
worker_connections = _settings.max_clients + 1000
# Thousands of clients reconnect within seconds after a deploy: a deeper accept queue than gunicorn's 2048 keeps
# their connections waiting instead of dropped and retried a second or more later (the kernel caps it at somaxconn).
backlog = 8192
timeout = 30
graceful_timeout = 10
# Short, so idle keep-alive connections do not hold a stopping worker past its 5 s budget.
keepalive = 2
# Several gunicorn masters may run on one host (tests, blue/green): no shared control socket.
control_socket_disable = True
# Request-derived text is escaped and tokens are redacted in every line of the access and error logs; behind
# nginx (a peer in FORWARDED_ALLOW_IPS, default loopback) the client address comes from X-Forwarded-For.
logger_class = "flexgate_stream.server.http_edge.GunicornLogger"
accesslog = "-"
# The path without its query string: ?access_token= must not reach the log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = _settings.log_level.lower()
wsgi_app = "flexgate_stream:create_app()"


def on_starting(server):
    gunicorn_hooks.clear_metrics_dir(_metrics_dir)
    gunicorn_hooks.hold_sigterm_across_forks()


def when_ready(server):
    warning = gunicorn_hooks.open_api_warning(_settings)
    if warning:
        server.log.warning(warning)


def post_worker_init(worker):
    gunicorn_hooks.worker_started(worker)


def worker_exit(server, worker):
    gunicorn_hooks.worker_exiting(worker)


def child_exit(server, worker):
    gunicorn_hooks.worker_gone(worker.pid, _metrics_dir)


def on_exit(server):
    gunicorn_hooks.master_exiting()
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
