"""The web tier: the Flask extension, blueprints and gunicorn hooks of the gevent workers."""
