"""The repository stays ruff-clean and type-checks (the config lives in pyproject.toml)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "datakit", "tests", "bench", "fuzz"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_do_not_reach_up() -> None:
    """design.md: ninep imports nothing of ours; store imports neither trio nor 9p."""

    def imports(package: str) -> str:
        return "\n".join(
            line
            for path in (ROOT / "datakit" / package).rglob("*.py")
            for line in path.read_text().splitlines()
            if line.lstrip().startswith(("import ", "from "))
        )

    ninep = imports("ninep")
    assert "datakit." not in ninep.replace("datakit.ninep", "")
    store = imports("store")
    for forbidden in ("trio", "datakit.ninep", "datakit.server", "datakit.vfs", "datakit.fs"):
        assert forbidden not in store, forbidden
    client = imports("client")
    assert "datakit.server" not in client and "datakit.fs" not in client


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (also inside functions and
    ``if TYPE_CHECKING``), absolute: ``from datakit import metrics`` gives
    ``datakit.metrics``, ``from ._x import y`` in datakit/store gives
    ``datakit.store._x``."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(*parts: str) -> dict[str, set[str]]:
    """``{file: modules it imports}`` for a module or every file of a package."""
    target = ROOT.joinpath("datakit", *parts)
    files = [target.with_suffix(".py")] if not target.is_dir() else sorted(target.rglob("*.py"))
    return {str(f.relative_to(ROOT)): imported_modules(f) for f in files}


def offenders(imports: dict[str, set[str]], bad: Callable[[str], bool]) -> list[str]:
    return sorted(f"{f}: {m}" for f, mods in imports.items() for m in mods if bad(m))


def _ours(module: str) -> bool:
    return module == "datakit" or module.startswith("datakit.")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_vfs_imports_nothing_of_ours_but_itself() -> None:
    """design.md: vfs is the 9p-independent filesystem toolkit; of ours it
    uses only its own modules (its errors). The server checks new names
    (server/names.py, over the leaf pathnames module, which imports nothing
    of ours)."""
    assert not offenders(imports_of("vfs"), lambda m: _ours(m) and not _within(m, "datakit.vfs"))
    assert not offenders(imports_of("pathnames"), _ours)


def test_server_never_imports_fs_or_store() -> None:
    """The 9p server serves any vfs tree: it knows neither the DataKit tree nor the store."""
    server = imports_of("server")
    assert not offenders(server, lambda m: _within(m, "datakit.fs") or _within(m, "datakit.store"))


def test_client_backends_use_only_the_stores_public_api() -> None:
    client = imports_of("client")
    assert not offenders(client, lambda m: _within(m, "dulwich"))
    private = [m for m in imported_modules(ROOT / "datakit/store/__init__.py") if "._" in m]
    assert private  # the check below sees the store's private modules
    assert not offenders(client, lambda m: m.startswith("datakit.store._"))


def test_metric_definitions_do_no_io() -> None:
    """The registry is imported everywhere; its HTTP endpoint is datakit.metrics_http."""
    metrics = imports_of("metrics")
    assert not offenders(metrics, lambda m: m.split(".")[0] in {"trio", "h11", "socket"})
    assert not offenders(metrics, _ours)


def test_shared_leaf_modules_import_nothing_of_ours() -> None:
    """pathnames, formats and options are used across layers that may not
    import each other (options by the applications too): they stay leaves."""
    for leaf in ("pathnames", "formats", "options"):
        assert not offenders(imports_of(leaf), _ours), leaf


def test_applications_use_the_public_client_api_only() -> None:
    """design.md: the bridges, the CI and the image tools are clients like any other. Of ours
    they use datakit.client (not its backends), the GitHub model and layout,
    what services share (bridges.service), the leaf options module and
    their own modules; never the store, the filesystem or the server. The
    bridges know nothing of the CI."""
    backends = {"git_backend", "ninep_backend", "ninep_client"}
    package_names = ("datakit", "datakit.__version__", "datakit.bridges")

    def bad(module: str, own: str, shared: tuple[str, ...]) -> bool:
        if not _ours(module) or module in package_names or _within(module, own):
            return False  # (`from datakit.bridges import service` names the package too)
        if _within(module, "datakit.client"):
            return module.split(".")[2:3] in ([b] for b in backends)
        allowed = ("datakit.github", "datakit.options", "datakit.metrics_http", *shared)
        return not any(_within(module, p) for p in allowed)

    ci = imports_of("ci")
    assert "datakit/ci/engine.py" in ci
    assert not offenders(ci, lambda m: bad(m, "datakit.ci", ("datakit.bridges.service",)))
    assert not offenders(imports_of("bridges"), lambda m: bad(m, "datakit.bridges", ()))
    images = imports_of("images")
    assert "datakit/images/build.py" in images
    no_github = lambda m: bad(m, "datakit.images", ()) or _within(m, "datakit.github")  # noqa: E731
    assert not offenders(images, no_github)
