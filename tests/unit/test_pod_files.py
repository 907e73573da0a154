"""podman/pod_secret.py and podman/render_pod.py, the two steps of `make pod` that write files."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "podman" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pod_secret = load("pod_secret")
render_pod = load("render_pod")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """A umask that lets every file be read by everyone, so only the code can keep them private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_token_is_written_for_its_user_only(tmp_path, open_umask):
    folder = tmp_path / "build" / "pod" / "flexgate"
    token_file = pod_secret.keep_secret(folder)
    assert token_file == folder / "api-token"
    assert (mode(folder), mode(token_file), mode(folder / "secret.json")) == (0o700, 0o600, 0o600)
    secret = json.loads((folder / "secret.json").read_text())
    assert token_file.read_text() == base64.b64decode(secret["api-tokens"]).decode() + "\n"
    assert sorted(os.listdir(folder)) == ["api-token", "secret.json"]  # no draft left behind


def test_the_token_stays_the_same_and_private_from_one_run_to_the_next(tmp_path, open_umask):
    folder = tmp_path / "pod"
    first = pod_secret.keep_secret(folder).read_text()
    os.chmod(folder, 0o755)
    (folder / "api-token").unlink()
    os.chmod(folder / "secret.json", 0o644)
    assert pod_secret.keep_secret(folder).read_text() == first
    assert (mode(folder), mode(folder / "api-token"), mode(folder / "secret.json")) == (0o700, 0o600, 0o600)


def test_a_file_it_did_not_write_is_refused_with_a_sentence(tmp_path, capsys):
    folder = tmp_path / "pod"
    folder.mkdir()
    (folder / "secret.json").write_text('{"api-tokens": "not base64!"}')
    assert pod_secret.main([str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a secret this script wrote: remove it" in err
    assert not (folder / "api-token").exists()


def test_each_pod_has_its_own_name_port_secret_and_volumes():
    one = render_pod.render_pod("flexgate-a", 9001, "flexgate-a-secrets")
    two = render_pod.render_pod("flexgate-b", 9002, "flexgate-b-secrets")
    for text, name, port in ((one, "flexgate-a", 9001), (two, "flexgate-b", 9002)):
        assert f"\n  name: {name}\n" in text and f"hostPort: {port}," in text
        assert "name: flexgate-secrets," not in text and f"name: {name}-secrets," in text
        assert f"{{name: {name}-postgres-data, emptyDir: {{}}}}" in text
        assert text.count(f"{{name: {name}-postgres-data,") == 3  # the volume, the release step and PostgreSQL
    volumes = [{line for line in text.splitlines() if "emptyDir: {}" in line} for text in (one, two)]
    assert len(volumes[0]) == 4 and not volumes[0] & volumes[1]


def test_the_release_step_is_an_init_container():
    text = render_pod.render_pod("flexgate", 8080, "flexgate-secrets")
    init, containers = text.split("\n  initContainers:\n")[1].split("\n  containers:\n")
    assert "\n    - name: release\n" in init and "db upgrade" in init
    assert "name: release" not in containers


@pytest.mark.parametrize("args", [["Bad_Name", "8080", "s"], ["flexgate", "70000", "s"], ["flexgate", "80"]])
def test_bad_arguments_are_one_sentence(args, capsys):
    assert render_pod.main(args) in (1, 2)
    assert capsys.readouterr().err.count("\n") == 1
