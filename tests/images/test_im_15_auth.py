"""IM-15: a registry with htpasswd Basic auth (plain HTTP on loopback), and
a token (Bearer) registry played by the proxy. Without credentials the push
fails naming the registry and 401; with `--auth-file` (or
$REGISTRY_AUTH_FILE) holding the `auths` entry it succeeds."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.imagehelpers import (
    C1_FILES,
    C2_CHANGES,
    Db,
    expect_error,
    get_manifest,
    git_db,
    rootfs_tree,
    run_image,
    skopeo_inspect,
    tree_of,
    unpack_ref,
)
from tests.images.proxy import RegistryProxy
from tests.images.registryproc import RegistryProc, running_registry

USER, PASSWORD = "dkuser", "s3cret pass"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    with git_db(tmp_path / "db.git") as d:
        yield d


def no_ambient_credentials(tmp_path: Path) -> dict[str, str]:
    """HOME and XDG_RUNTIME_DIR without any auth.json: only what a test gives counts."""
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "xdg").mkdir(exist_ok=True)
    return {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}


def auth_file(path: Path, registry: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    return path


@pytest.mark.slow
def test_im_15_basic_auth(db: Db, tmp_path: Path) -> None:
    c1 = db.commit(C1_FILES, "c1")
    c2 = db.update(C2_CHANGES, "c2")
    env = no_ambient_credentials(tmp_path)
    with running_registry(tmp_path / "authreg", htpasswd={USER: PASSWORD}) as reg:
        ref = f"{reg.address}/dk/site:latest"
        creds = f"{USER}:{PASSWORD}"
        push = ("push", "--db", db.address, "--to", ref, "--plain-http")

        res = run_image(*push, "--commit", c1.id, check=False, env=env)
        expect_error(res, reg.address, "401")
        assert get_manifest(reg.address, "dk/site", "latest", creds=creds) is None

        wrong = auth_file(tmp_path / "wrong.json", reg.address, USER, "not it")
        res = run_image(*push, "--commit", c1.id, "--auth-file", str(wrong), check=False, env=env)
        expect_error(res, reg.address, "401")
        assert get_manifest(reg.address, "dk/site", "latest", creds=creds) is None

        # a file that is not there: one line naming it
        missing = tmp_path / "nosuch.json"
        res = run_image(*push, "--commit", c1.id, "--auth-file", str(missing), check=False, env=env)
        expect_error(res, str(missing))

        good = auth_file(tmp_path / "auth.json", reg.address, USER, PASSWORD)
        res = run_image(*push, "--commit", c1.id, "--auth-file", str(good), env=env)
        digest, how = res.one()
        assert how == "full"
        info = skopeo_inspect(ref, creds=creds)
        assert info["Digest"] == digest and len(info["Layers"]) == 1
        assert rootfs_tree(unpack_ref(ref, tmp_path / "u1", creds=creds)) == tree_of(c1)

        # $REGISTRY_AUTH_FILE, entry with username/password keys (C.4 step 5)
        other = tmp_path / "other.json"
        other.write_text(
            json.dumps({"auths": {reg.address: {"username": USER, "password": PASSWORD}}})
        )
        res = run_image(*push, "--commit", c2.id, env={**env, "REGISTRY_AUTH_FILE": str(other)})
        assert res.one()[1] == f"delta from {c1.id}"
        assert rootfs_tree(unpack_ref(ref, tmp_path / "u2", creds=creds)) == tree_of(c2)

        # the other places credentials are looked for (C.4 step 5): podman's
        # $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json
        # (here with an "https://host/v1/"-style key)
        xdg = tmp_path / "xdg" / "containers"
        xdg.mkdir(parents=True)
        auth_file(xdg / "auth.json", reg.address, USER, PASSWORD)
        res = run_image(*push, "--commit", c2.id, env=env)
        assert res.one()[1] == "up to date"
        (xdg / "auth.json").unlink()
        expect_error(run_image(*push, "--commit", c2.id, check=False, env=env), "401")
        docker = tmp_path / "home" / ".docker"
        docker.mkdir(parents=True)
        auth_file(docker / "config.json", f"https://{reg.address}/v1/", USER, PASSWORD)
        res = run_image(*push, "--commit", c2.id, env=env)
        assert res.one()[1] == "up to date"


@pytest.mark.slow
def test_im_15_bearer_token(db: Db, tmp_path: Path, registry: RegistryProc) -> None:
    c1 = db.commit(C1_FILES, "c1")
    env = no_ambient_credentials(tmp_path)
    with RegistryProxy(registry.address) as proxy:
        proxy.require_bearer(USER, PASSWORD)
        ref = f"{proxy.address}/dk/site:latest"
        push = ("push", "--db", db.address, "--commit", c1.id, "--to", ref, "--plain-http")
        expect_error(run_image(*push, check=False, env=env), proxy.address, "401")
        assert get_manifest(registry.address, "dk/site", "latest") is None

        good = auth_file(tmp_path / "auth.json", proxy.address, USER, PASSWORD)
        digest, how = run_image(*push, "--auth-file", str(good), env=env).one()
        assert how == "full"
        assert [r for r in proxy.requests if r[1].startswith("/token")], proxy.requests
    remote = get_manifest(registry.address, "dk/site", "latest")
    assert remote is not None and remote.digest == digest
    assert rootfs_tree(unpack_ref(f"{registry.address}/dk/site:latest", tmp_path / "u")) == (
        tree_of(c1)
    )


@pytest.mark.slow
def test_im_15_tls_insecure(db: Db, tmp_path: Path) -> None:
    """A registry behind TLS with a self-signed certificate: refused (one
    line) unless --insecure is given."""
    c1 = db.commit(C1_FILES, "c1")
    with running_registry(tmp_path / "tlsreg", tls=True) as reg:
        address = reg.address
        ref = f"{address}/dk/site:latest"
        push = ("push", "--db", db.address, "--commit", c1.id, "--to", ref)
        expect_error(run_image(*push, check=False), address)
        digest, how = run_image(*push, "--insecure").one()
        assert how == "full"
        info = skopeo_inspect(ref)
        assert info["Digest"] == digest and len(info["Layers"]) == 1
        assert rootfs_tree(unpack_ref(ref, tmp_path / "u")) == tree_of(c1)
        # up to date, over TLS too
        assert run_image(*push, "--insecure").one() == (digest, "up to date")
