"""The web process's gunicorn machinery: its gevent worker, resting streams, hooks and reload hand-over."""
