"""gunicorn settings for the web process: gevent workers sized for thousands of open streams."""

from flexgate_stream.settings import load_or_exit

_settings = load_or_exit()  # a bad environment stops the master with one sentence, exit 2

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.web_concurrency
worker_class = "gevent"
# Each open SSE stream holds one connection: leave room above FLEXGATE_MAX_CLIENTS for plain requests.
worker_connections = _settings.max_clients + 1000
timeout = 30
graceful_timeout = 10
keepalive = 5
# Several gunicorn masters may run on one host (tests, blue/green): no shared control socket.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
wsgi_app = "flexgate_stream:create_app()"
