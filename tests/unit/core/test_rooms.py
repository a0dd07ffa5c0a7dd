"""The import rules between rooms (docs/architecture.md, "Rooms and the import
rules between them"), checked on the code's own imports.

Data flows one way: entry points (web, rpc, cli, the bridge) -> services ->
domain + storage. These tests read every import statement of the packages,
including those inside functions, without importing anything:

- the domain imports no grpc, flask, werkzeug or sqlalchemy, and nothing of
  its party but other domain modules;
- no service module imports sqlalchemy, flask or werkzeug, or an entry point;
- no entry point imports sqlalchemy or a storage module (the wallet's plain
  records, ``ewallet_client.store.records``, are values, not storage);
- storage imports no service and no entry point;
- the use-case areas of each party import each other without a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import netpay

ROOT = Path(netpay.__file__).resolve().parent.parent
PARTIES = ("broker", "vendor", "ewallet_client")
FRAMEWORKS = ("grpc", "flask", "werkzeug", "sqlalchemy")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(*globs: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pattern in globs:
        for path in sorted(ROOT.glob(pattern)):
            found[_module_name(path)] = path
    assert found, f"no module matches {globs}"
    return found


def _imports(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            # ``from pkg import mod`` may name a submodule.
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _offending(imports: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    bad = tuple(forbidden)
    return sorted(
        name for name in imports if any(name == f or name.startswith(f"{f}.") for f in bad)
    )


DOMAIN = _modules("broker/domain/*.py", "vendor/domain.py", "ewallet_client/domain.py")
SERVICES = _modules("broker/services/*.py", "vendor/services/*.py", "ewallet_client/wallet/*.py")
STORAGE = _modules("broker/storage/*.py", "vendor/storage/*.py", "ewallet_client/store/*.py")
ENTRY_POINTS = _modules(
    "broker/web/*.py",
    "broker/rpc.py",
    "broker/cli.py",
    "vendor/web/*.py",
    "vendor/rpc.py",
    "vendor/cli.py",
    "ewallet_client/cli/*.py",
    "ewallet_client/bridge/*.py",
)
ENTRY_POINT_NAMES = tuple(
    sorted(
        {
            "broker.web",
            "broker.rpc",
            "broker.cli",
            "vendor.web",
            "vendor.rpc",
            "vendor.cli",
            "ewallet_client.cli",
            "ewallet_client.bridge",
        }
    )
)
STORAGE_NAMES = ("broker.storage", "vendor.storage", "ewallet_client.store")
SERVICE_NAMES = ("broker.services", "vendor.services", "ewallet_client.wallet")


@pytest.mark.parametrize("name", sorted(DOMAIN))
def test_the_domain_is_plain(name: str) -> None:
    party = name.split(".", maxsplit=1)[0]
    imported = _imports(DOMAIN[name])
    assert _offending(imported, FRAMEWORKS) == []
    own = [
        n for n in imported if n.split(".")[0] == party and not n.startswith((f"{party}.domain",))
    ]
    assert own == [], f"{name} reaches outside the domain: {own}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_services_touch_no_database_and_no_entry_point(name: str) -> None:
    imported = _imports(SERVICES[name])
    assert _offending(imported, ("sqlalchemy", "flask", "werkzeug")) == []
    assert _offending(imported, ENTRY_POINT_NAMES) == []


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_points_call_use_cases_not_storage(name: str) -> None:
    imported = _imports(ENTRY_POINTS[name])
    assert _offending(imported, ("sqlalchemy",)) == []
    storage = [
        n
        for n in _offending(imported, STORAGE_NAMES)
        if not n.startswith("ewallet_client.store.records")
    ]
    assert storage == [], f"{name} imports storage: {storage}"


@pytest.mark.parametrize("name", sorted(STORAGE))
def test_storage_serves_the_services_and_imports_none(name: str) -> None:
    imported = _imports(STORAGE[name])
    assert _offending(imported, SERVICE_NAMES + ENTRY_POINT_NAMES) == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", SERVICE_NAMES)
def test_the_use_case_areas_import_each_other_without_a_cycle(package: str) -> None:
    areas = {n: p for n, p in SERVICES.items() if n.startswith(f"{package}.")}
    assert len(areas) >= 5, areas
    graph = {name: {n for n in _imports(path) if n in areas} for name, path in areas.items()}
    assert _cycle(graph) is None
