"""The web tier's Flask app: the extension (StreamService, admission), blueprints, parameters, auth and metrics."""
