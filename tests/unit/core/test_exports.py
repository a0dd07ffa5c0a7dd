"""The public surface of every package is its modules' ``__all__``.

The list of modules is found by walking the packages, not kept by hand, so a
new module is checked the day it is added. Every module that defines or hands
on names has an ``__all__``; every name in it exists, once; and every public
class or function a module defines is in its ``__all__`` (otherwise its name
starts with ``_``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

PACKAGES = ("netpay", "broker", "vendor", "ewallet_client")
GENERATED = ("netpay.v1",)  # protoc's output: not ours to shape


def _module_names() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if not info.name.startswith(GENERATED):
                names.append(info.name)
    return sorted(names)


MODULES = _module_names()


def _bound_names(module: ModuleType) -> list[str]:
    """Names the module binds itself: its submodules, bound by importing them, and
    ``annotations`` (from ``from __future__ import annotations``) are not."""
    return [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and n != "annotations"
        and not (inspect.ismodule(value) and value.__name__ == f"{module.__name__}.{n}")
    ]


def test_the_walk_finds_every_party() -> None:
    for expected in ("netpay.chain", "broker.server", "vendor.server", "ewallet_client.wallet"):
        assert expected in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_module_states_its_surface(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # Only an empty package face may go without: it binds no name of its own.
        bound = _bound_names(module)
        assert bound == [], f"{name} binds {bound} but has no __all__"
        return
    assert len(set(exported)) == len(exported), f"{name} exports a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it lacks"
    own = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    ]
    unexported = [n for n in own if n not in exported]
    assert unexported == [], f"{name} defines public {unexported} outside __all__"


def test_every_error_code_maps_back_to_its_class() -> None:
    from netpay import errors

    classes = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    concrete = [
        c for c in classes if issubclass(c, errors.NetPayError) and c is not errors.PaymentError
    ]
    codes = [c.code for c in concrete]
    assert len(set(codes)) == len(codes), "every error class has its own wire code"
    for cls in concrete:
        assert errors.error_for_code(cls.code) is cls
    assert errors.error_for_code("already_spent") is errors.AlreadySpent
    assert errors.error_for_code("no-such-code") is errors.NetPayError
