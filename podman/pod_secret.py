"""Print a new podman secret for podman/flexgate-pod.yaml: random NATS and PostgreSQL passwords, an API token,
and the DATABASE_URL that uses them, as the JSON map of base64 values `podman kube play` reads for secretKeyRef.

    python3 podman/pod_secret.py | podman secret create flexgate-secrets -
"""

from __future__ import annotations

import base64
import json
import secrets


def pod_secret() -> dict[str, str]:
    """The secret's keys and base64-encoded values."""
    postgres = secrets.token_urlsafe(24)
    values = {
        "nats-password": secrets.token_urlsafe(24),
        "postgres-password": postgres,
        "database-url": f"postgresql://flexgate:{postgres}@127.0.0.1:5432/flexgate",
        "api-tokens": secrets.token_urlsafe(32),
    }
    return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}


if __name__ == "__main__":
    print(json.dumps(pod_secret()))
