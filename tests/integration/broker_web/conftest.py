"""A real broker with its web portal on 127.0.0.1:0, driven by requests over loopback."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, start_broker
from netpay.clock import FakeClock

PASSWORD = "correct horse battery"
DEPOSIT_MINOR = 10_000
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Portal:
    broker: BrokerHandle
    clock: FakeClock
    data_dir: Path

    @property
    def url(self) -> str:
        assert self.broker.web_url is not None
        return self.broker.web_url


class Browser:
    """A requests session that fills in the CSRF token the way a browser form does."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, timeout=30)

    def csrf(self, path: str = "/login") -> str:
        page = self.get(path)
        match = _CSRF_RE.search(page.text)
        assert match is not None, page.text
        return match.group(1)

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        csrf: str | None = None,
        form_page: str = "/login",
        follow: bool = True,
    ) -> requests.Response:
        fields = dict(data or {})
        fields["csrf_token"] = csrf if csrf is not None else self.csrf(form_page)
        return self.http.post(self.base + path, data=fields, timeout=30, allow_redirects=follow)

    def register(self, username: str, password: str = PASSWORD) -> requests.Response:
        return self.post(
            "/register",
            {"username": username, "password": password, "password_again": password},
        )

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        return self.post("/login", {"username": username, "password": password})


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    clock = FakeClock()
    data_dir = tmp_path / "broker"
    broker = start_broker(
        BrokerConfig(data_dir=data_dir, web_addr="127.0.0.1:0", demo_deposit_minor=DEPOSIT_MINOR),
        clock=clock,
    )
    try:
        yield Portal(broker, clock, data_dir)
    finally:
        broker.stop()


@pytest.fixture
def browser(portal: Portal) -> Iterator[Browser]:
    b = Browser(portal.url)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def new_browser(portal: Portal) -> Iterator[Callable[[], Browser]]:
    """Another browser (its own cookie jar) on the same portal."""
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser(portal.url))
        return made[-1]

    try:
        yield make
    finally:
        for b in made:
            b.close()
