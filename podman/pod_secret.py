"""Keep the secrets of one pod of podman/flexgate-pod.yaml in a folder only the user running it can read:
secret.json (random NATS and PostgreSQL passwords, an API token and the DATABASE_URL that uses them, as the JSON map
of base64 values `podman kube play` reads for secretKeyRef) and api-token (the token alone, for clients).

    python3 podman/pod_secret.py build/pod/flexgate
    podman secret create flexgate-secrets build/pod/flexgate/secret.json

The folder is made mode 0700 and both files mode 0600. An existing secret.json is kept, so the token stays the same
from one `make pod` to the next; api-token is rewritten from it each time. Prints the path of api-token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import sys
from pathlib import Path

KEYS = ("nats-password", "postgres-password", "database-url", "api-tokens")


class SecretFolderError(Exception):
    """The folder or its files cannot be used; the message says what to do."""


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


def private_folder(folder: Path) -> None:
    """Make ``folder`` (and its parents), owned by this user, with mode 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = folder.stat().st_uid
    if owner != os.geteuid():
        raise SecretFolderError(f"{folder} belongs to user {owner}, not to you: run as that user or remove it.")
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and an existing folder may be wider


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start, replacing it in one step."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(draft, 0o600)  # the umask cannot widen it, but say it once more for filesystems that ignore modes
        os.replace(draft, path)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise


def read_secret(path: Path) -> dict[str, str]:
    """The secret kept in ``path``, checked to hold every key as base64."""
    try:
        secret = json.loads(path.read_text())
        for key in KEYS:
            base64.b64decode(secret[key], validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise SecretFolderError(f"{path} is not a secret this script wrote: remove it to make a new one.") from None
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        os.chmod(path, 0o600)
    return {key: secret[key] for key in KEYS}


def keep_secret(folder: Path) -> Path:
    """Make sure ``folder`` holds secret.json and api-token, both private; return the path of api-token."""
    private_folder(folder)
    kept = folder / "secret.json"
    if kept.exists():
        secret = read_secret(kept)
    else:
        secret = pod_secret()
        write_private(kept, json.dumps(secret) + "\n")
    token_file = folder / "api-token"
    write_private(token_file, base64.b64decode(secret["api-tokens"]).decode() + "\n")
    return token_file


def main(argv: list[str]) -> int:
    """Keep the secret folder named in ``argv``; print the token's path, or one sentence and exit 1."""
    if len(argv) != 1:
        print("usage: python3 podman/pod_secret.py FOLDER (for example build/pod/flexgate)", file=sys.stderr)
        return 2
    try:
        print(keep_secret(Path(argv[0])).resolve())
    except (SecretFolderError, OSError) as exc:
        print(f"pod_secret: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
