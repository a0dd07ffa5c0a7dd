"""The demo newspaper's articles and identities (``vendor/data/*.json``).

An articles file is ``{"articles": [{"id", "title", "amount", "currency",
"summary", "body": [paragraph, ...]}, ...]}``; an ``amount`` of 0 makes the
article free. It may also carry ``"name"``, ``"title_prefix"`` and
``"tagline"`` to name its own newspaper. ``newspapers.json`` lists the
packaged identities (The Daily Hash, The Chain Gazette).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netpay.encoding import PARTY_ID_RE, check_currency
from netpay.errors import InvalidArgument, NetPayError
from netpay.limits import DEFAULT_LIMITS
from netpay.money import Money
from vendor.domain import Item

__all__ = [
    "DATA_DIR",
    "Article",
    "Newspaper",
    "load_articles",
    "load_newspaper",
    "packaged_newspapers",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
_MAX_ARTICLES = 1_000
_MAX_FILE_BYTES = 4 * 1024 * 1024
_MAX_TEXT = 20_000
_MAX_PARAGRAPHS = 200


@dataclass(frozen=True)
class Article:
    article_id: str
    title: str
    amount_minor: int  # 0 = free
    currency: str
    summary: str
    paragraphs: tuple[str, ...]

    @property
    def is_free(self) -> bool:
        return self.amount_minor == 0

    @property
    def price(self) -> Money:
        return Money(self.amount_minor, self.currency)

    def item(self) -> Item:
        return Item(item_id=self.article_id, price=self.price)


@dataclass(frozen=True)
class Newspaper:
    key: str
    name: str
    title_prefix: str
    tagline: str
    articles: tuple[Article, ...]

    def article(self, article_id: str) -> Article | None:
        for article in self.articles:
            if article.article_id == article_id:
                return article
        return None

    def headline(self, article: Article) -> str:
        return f"{self.title_prefix}: {article.title}"


def _text(raw: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str) or (required and not value) or len(value) > _MAX_TEXT:
        raise InvalidArgument(f"article field {name!r} must be text of 1..{_MAX_TEXT} characters")
    return value


def _article(raw: Any) -> Article:
    if not isinstance(raw, dict):
        raise InvalidArgument("every article must be a JSON object")
    article_id = _text(raw, "id")
    if not PARTY_ID_RE.fullmatch(article_id):
        raise InvalidArgument(f"article id {article_id[:40]!r} must match [a-z0-9-]{{1,32}}")
    amount = raw.get("amount")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not 0 <= amount <= DEFAULT_LIMITS.max_click_amount_minor
    ):
        raise InvalidArgument(f"article {article_id}: amount must be 0..10000 minor units")
    try:
        currency = check_currency(raw.get("currency", "EUR"))
    except NetPayError as exc:
        raise InvalidArgument(f"article {article_id}: {exc.detail}") from exc
    body = raw.get("body", [])
    if (
        not isinstance(body, list)
        or len(body) > _MAX_PARAGRAPHS
        or not all(isinstance(p, str) and len(p) <= _MAX_TEXT for p in body)
    ):
        raise InvalidArgument(f"article {article_id}: body must be a list of paragraphs")
    return Article(
        article_id=article_id,
        title=_text(raw, "title"),
        amount_minor=amount,
        currency=currency,
        summary=_text(raw, "summary", required=False),
        paragraphs=tuple(body),
    )


def _read(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _MAX_FILE_BYTES:
        raise InvalidArgument(f"{path} is larger than {_MAX_FILE_BYTES} bytes")
    value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise InvalidArgument(f"{path} must hold a JSON object")
    return value


def load_articles(path: Path) -> tuple[dict[str, Any], tuple[Article, ...]]:
    """The file's top-level object and its validated articles (unique ids)."""
    data = _read(path)
    raw = data.get("articles")
    if not isinstance(raw, list) or not 1 <= len(raw) <= _MAX_ARTICLES:
        raise InvalidArgument(f"{path}: 'articles' must be a list of 1..{_MAX_ARTICLES}")
    articles = tuple(_article(a) for a in raw)
    ids = [a.article_id for a in articles]
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"{path}: article ids must be unique")
    return data, articles


def packaged_newspapers() -> list[dict[str, str]]:
    data = _read(DATA_DIR / "newspapers.json")
    papers = data.get("newspapers")
    assert isinstance(papers, list) and papers, "newspapers.json lists the identities"
    return [{k: str(v) for k, v in p.items()} for p in papers]


def _slug(name: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return slug[:32] or "newspaper"


def load_newspaper(name: str | None = None, articles_file: Path | None = None) -> Newspaper:
    """The newspaper called ``name`` (a packaged key or name, or a new name),
    with the articles of ``articles_file`` (default: the packaged set)."""
    papers = packaged_newspapers()
    chosen: dict[str, str] | None = None
    if name is None:
        chosen = papers[0]
    else:
        wanted = name.strip().lower()
        for paper in papers:
            if wanted in (paper["key"].lower(), paper["name"].lower()):
                chosen = paper
    if chosen is None:
        assert name is not None
        chosen = {
            "key": _slug(name),
            "name": name,
            "title_prefix": name,
            "tagline": "",
            "articles": "articles.json",
        }
    path = articles_file if articles_file is not None else DATA_DIR / chosen["articles"]
    data, articles = load_articles(path)
    if articles_file is not None:
        for field in ("name", "title_prefix", "tagline"):
            value = data.get(field)
            if isinstance(value, str) and value and (field != "name" or name is None):
                chosen = {**chosen, field: value[:200]}
    return Newspaper(
        key=chosen["key"],
        name=chosen["name"][:200],
        title_prefix=chosen["title_prefix"][:200],
        tagline=chosen["tagline"][:500],
        articles=articles,
    )
