#!/usr/bin/env python3
"""Size that stays small: no module above ``max_module_lines`` and no function
above ``max_function_lines`` in the packages, outside generated code and tests.

    python scripts/check_size.py            # every package named in pyproject.toml
    python scripts/check_size.py vendor     # one folder (while splitting it)

The limits and the named exceptions, each with its reason, are in
``pyproject.toml`` under ``[tool.netpay.size]``. An exception that no longer
needs to be one is reported too, so the list never outlives its reason. A
function's size is its lines from ``def`` to its last line, closures
included: a 300-line closure is one 300-line function. Exit 1 on any
finding.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    max_module_lines: int
    max_function_lines: int
    paths: tuple[str, ...]
    exclude: tuple[str, ...]
    exceptions: dict[str, str]


def load_config() -> Config:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    size = data["tool"]["netpay"]["size"]
    exceptions = dict(size.get("exceptions", {}))
    for key, reason in exceptions.items():
        if not str(reason).strip():
            raise SystemExit(f"pyproject.toml: the size exception {key!r} gives no reason")
    return Config(
        max_module_lines=int(size["max_module_lines"]),
        max_function_lines=int(size["max_function_lines"]),
        paths=tuple(size["paths"]),
        exclude=tuple(size.get("exclude", ())),
        exceptions=exceptions,
    )


def _functions(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function, nested ones too."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                found.append((name, child.lineno, end - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def findings(config: Config, roots: list[Path]) -> tuple[list[str], set[str]]:
    """The violations, and the exception keys that were used."""
    problems: list[str] = []
    used: set[str] = set()
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            rel = path.resolve().relative_to(ROOT).as_posix()
            if any(rel.startswith(prefix) for prefix in config.exclude):
                continue
            source = path.read_text(encoding="utf-8")
            lines = len(source.splitlines())
            if lines > config.max_module_lines:
                if rel in config.exceptions:
                    used.add(rel)
                else:
                    problems.append(f"{rel}: {lines} lines (limit {config.max_module_lines})")
            for name, first, count in _functions(ast.parse(source, filename=rel)):
                if count <= config.max_function_lines:
                    continue
                key = f"{rel}::{name}"
                if key in config.exceptions:
                    used.add(key)
                else:
                    problems.append(
                        f"{rel}:{first}: {name} is {count} lines "
                        f"(limit {config.max_function_lines})"
                    )
    return problems, used


def main(argv: list[str]) -> int:
    config = load_config()
    whole = not argv
    roots = [ROOT / p for p in (argv or list(config.paths))]
    problems, used = findings(config, roots)
    if whole:
        for key in sorted(set(config.exceptions) - used):
            problems.append(f"pyproject.toml: size exception {key!r} is no longer needed")
    for line in problems:
        print(line)
    if problems:
        print(
            f"{len(problems)} size finding(s): split the module or function, or name "
            "the exception and its reason under [tool.netpay.size.exceptions]",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
