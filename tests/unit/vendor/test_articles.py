"""The packaged newspapers and articles files."""

from __future__ import annotations

import json

import pytest

from netpay.errors import InvalidArgument
from vendor.articles import load_newspaper, packaged_newspapers


def test_two_packaged_newspapers_with_their_own_names() -> None:
    papers = packaged_newspapers()
    names = {p["name"] for p in papers}
    assert {"The Daily Hash", "The Chain Gazette"} <= names
    hash_paper = load_newspaper("The Daily Hash")
    gazette = load_newspaper("chain-gazette")
    assert hash_paper.name != gazette.name and hash_paper.title_prefix != gazette.title_prefix
    assert load_newspaper(None).name == "The Daily Hash"


def test_a_dozen_paid_articles_with_distinct_prices_and_one_free() -> None:
    paper = load_newspaper()
    paid = [a for a in paper.articles if not a.is_free]
    free = [a for a in paper.articles if a.is_free]
    assert len(paid) == 12 and len(free) == 1
    amounts = [a.amount_minor for a in paid]
    assert len(set(amounts)) == 12
    assert min(amounts) == 1 and max(amounts) == 25
    assert {a.currency for a in paid} == {"EUR"}
    assert all(a.paragraphs for a in paper.articles)


def test_a_new_name_keeps_the_packaged_articles() -> None:
    paper = load_newspaper("The Evening Word")
    assert paper.name == "The Evening Word" and paper.key == "the-evening-word"
    assert len(paper.articles) == 13


def test_custom_articles_file(tmp_path) -> None:
    path = tmp_path / "articles.json"
    path.write_text(
        json.dumps(
            {
                "name": "The Test Times",
                "title_prefix": "Times",
                "articles": [{"id": "a", "title": "A", "amount": 3, "currency": "EUR"}],
            }
        )
    )
    paper = load_newspaper(None, path)
    assert (paper.name, paper.title_prefix) == ("The Test Times", "Times")
    assert paper.article("a").amount_minor == 3


@pytest.mark.parametrize(
    "article",
    [
        {"id": "Bad Id", "title": "x", "amount": 1},
        {"id": "a", "title": "x", "amount": -1},
        {"id": "a", "title": "x", "amount": 10_001},
        {"id": "a", "title": "x", "amount": 1.5},
        {"id": "a", "title": "", "amount": 1},
        {"id": "a", "title": "x", "amount": 1, "currency": "eur"},
    ],
)
def test_bad_articles_are_refused(tmp_path, article) -> None:
    path = tmp_path / "articles.json"
    path.write_text(json.dumps({"articles": [article]}))
    with pytest.raises(InvalidArgument):
        load_newspaper(None, path)


def test_duplicate_ids_are_refused(tmp_path) -> None:
    path = tmp_path / "articles.json"
    one = {"id": "a", "title": "x", "amount": 1}
    path.write_text(json.dumps({"articles": [one, one]}))
    with pytest.raises(InvalidArgument, match="unique"):
        load_newspaper(None, path)
