"""Every public `netpay` command has --help text with an example."""

from __future__ import annotations

import argparse

import pytest

from netpay.cli.main import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_fixed_surface_exists() -> None:
    paths = {p for p, _ in COMMANDS}
    for required in [
        ("demo",),
        ("broker", "serve"),
        ("broker", "add-vendor"),
        ("vendor", "serve"),
        ("wallet", "register"),
        ("wallet", "login"),
        ("wallet", "buy"),
        ("wallet", "balance"),
        ("wallet", "history"),
        ("wallet", "read"),
        ("wallet", "authorize"),
    ]:
        assert required in paths


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "netpay")
def test_help_has_an_example(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower(), f"netpay {' '.join(path)} --help shows no example"
    assert "netpay " in out.split("example", 1)[1].lower() or "curl" in out
