"""gunicorn settings of the floor (bench/floor_app.py): conf/gunicorn.conf.py's shape with gunicorn's own parts only.

The same worker count, gevent worker settings, parser, queue, timeouts and access log format; gunicorn's stock
gevent worker and logger, no hooks. FLOOR_WORKERS, FLOOR_CONNECTIONS (and FLOOR_GC, FLOOR_TIMING, read by the app)
come from the benchmark.
"""

import os

os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")  # as conf/gunicorn.conf.py sets it

workers = int(os.environ.get("FLOOR_WORKERS", "2"))
http_parser = "python"
worker_class = "gevent"
worker_connections = int(os.environ.get("FLOOR_CONNECTIONS", "11100"))
backlog = 8192
timeout = 30
graceful_timeout = 10
keepalive = 2
control_socket_disable = True
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = "warning"
wsgi_app = "bench.floor_app:create_app()"
