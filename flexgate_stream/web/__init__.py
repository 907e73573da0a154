"""The web tier: blueprints served by gunicorn's gevent workers."""
