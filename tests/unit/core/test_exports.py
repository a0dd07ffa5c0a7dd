"""The public surface of the core package is its modules' __all__; every name must exist."""

from __future__ import annotations

import importlib

import pytest

CORE_MODULES = [
    "netpay.chain",
    "netpay.clock",
    "netpay.encoding",
    "netpay.envelope",
    "netpay.errors",
    "netpay.files",
    "netpay.header",
    "netpay.limits",
    "netpay.money",
    "netpay.browser",
    "netpay.ready",
    "netpay.sqlstore",
    "netpay.webforms",
    "netpay.webserver",
    "netpay.transport.auth",
    "netpay.transport.server",
    "netpay.transport.status",
]


@pytest.mark.parametrize("name", CORE_MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported, f"{name} exports nothing"
    assert len(set(exported)) == len(exported)
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


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
