"""The newspaper's ``next`` parameter: a path on this site, nothing else."""

from __future__ import annotations

import pytest

from netpay.errors import InvalidArgument
from vendor.web.wallet import _local_path


@pytest.mark.parametrize("value", [None, "", "/", "/articles/1", "/articles/1?x=1#top"])
def test_local_paths_are_kept(value: str | None) -> None:
    assert _local_path(value) == (value or "/")


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "evil.example/x",
        "javascript:alert(1)",
        "/a b",
        "/a\tb",
        "/a\nb",
        "/" + "a" * 600,
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        _local_path(value)
