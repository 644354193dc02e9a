"""The FTS5 keyword index: BM25 ranking, upsert semantics, filters, and hostile query text."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import TransientError
from search_api.filters import SearchFilters
from store.keyword_index import MAX_QUERY_TERMS, KeywordDoc, KeywordIndex, match_expression


def doc(ident: str, title: str, text: str = "", **fields: object) -> KeywordDoc:
    base: dict[str, object] = {
        "source": "a.example",
        "feed_id": "f1",
        "language": "en",
        "published_at": 1_000,
    }
    base.update(fields)
    return KeywordDoc(id=ident, title=title, text=text, **base)  # type: ignore[arg-type]


@pytest.fixture
def index(tmp_path: Path) -> KeywordIndex:
    idx = KeywordIndex(tmp_path / "keywords.sqlite")
    idx.upsert(
        [
            doc("storm", "Storm floods the coast", "Heavy rain and wind hit the harbour town."),
            doc("budget", "Budget vote delayed", "Parliament postpones the budget vote again."),
            doc(
                "rain",
                "Weekend weather",
                "More rain expected; the storm moves north.",
                source="b.example",
                language="fr",
                published_at=2_000,
                feed_id="f2",
            ),
        ]
    )
    return idx


def test_title_matches_rank_above_body_matches(index: KeywordIndex) -> None:
    ranked = index.search("storm", limit=10)
    assert [ident for ident, _ in ranked] == ["storm", "rain"]
    assert ranked[0][1] > ranked[1][1] > 0


def test_stemming_and_case_fold_find_inflected_words(index: KeywordIndex) -> None:
    assert [i for i, _ in index.search("FLOODING", limit=10)] == ["storm"]
    assert [i for i, _ in index.search("votes", limit=10)] == ["budget"]


def test_upsert_replaces_an_id_instead_of_adding_a_copy(index: KeywordIndex) -> None:
    index.upsert([doc("storm", "Heatwave grips the city", "No rain for weeks.")])
    assert index.count() == 3
    assert [i for i, _ in index.search("floods", limit=10)] == []
    assert [i for i, _ in index.search("heatwave", limit=10)] == ["storm"]


def test_filters_restrict_like_the_milvus_expression(index: KeywordIndex) -> None:
    def ids(**kw: object) -> set[str]:
        return {i for i, _ in index.search("storm rain", limit=10, filters=SearchFilters(**kw))}  # type: ignore[arg-type]

    assert ids() == {"storm", "rain"}
    assert ids(sources=["b.example"]) == {"rain"}
    assert ids(language="en") == {"storm"}
    assert ids(feeds=["f1", "f9"]) == {"storm"}
    assert ids(since=1_500) == {"rain"}
    assert ids(until=1_000) == {"storm"}
    assert ids(since=1_001, until=1_999) == set()


def test_limit_and_queries_without_words(index: KeywordIndex) -> None:
    assert len(index.search("storm rain budget", limit=1)) == 1
    assert index.search("   ", limit=5) == []
    assert index.search("!!! ???", limit=5) == []
    assert index.search("storm", limit=0) == []


@pytest.mark.parametrize(
    "hostile",
    [
        'storm" OR "budget',
        "storm NEAR(budget)",
        "title:storm",
        "-budget storm*",
        "') OR 1=1 --",
        "storm'; DROP TABLE docs; --",
        "\\u0022storm\\u0022",
        "^storm AND NOT rain",
    ],
)
def test_fts_syntax_in_a_query_is_plain_text(index: KeywordIndex, hostile: str) -> None:
    found = {i for i, _ in index.search(hostile, limit=10)}
    words = set(match_expression(hostile).replace('"', "").split(" OR "))  # type: ignore[union-attr]
    # Only documents containing one of the query's words come back, and nothing breaks.
    expected = {"storm", "rain"} if "storm" in words or "rain" in words else set()
    if "budget" in words:
        expected.add("budget")
    assert found <= {"storm", "rain", "budget"} and found == expected
    assert index.count() == 3


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_match_expression_is_quoted_terms_only(query: str) -> None:
    match = match_expression(query)
    if match is None:
        return
    terms = match.split(" OR ")
    assert 1 <= len(terms) <= MAX_QUERY_TERMS
    for term in terms:
        assert term.startswith('"') and term.endswith('"') and '"' not in term[1:-1]


def test_any_text_searches_without_error(tmp_path: Path) -> None:
    idx = KeywordIndex(tmp_path / "k.sqlite")
    idx.upsert([doc("x", "Ünïcödé title", "body")])

    @settings(max_examples=100, deadline=None)
    @given(st.text(max_size=200))
    def search_anything(query: str) -> None:
        for ident, _ in idx.search(query, limit=5):
            assert ident == "x"

    search_anything()


def test_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    writer = KeywordIndex(tmp_path / "shared.sqlite")
    reader = KeywordIndex(tmp_path / "shared.sqlite")
    writer.upsert([doc("a", "Election results", "")])
    assert [i for i, _ in reader.search("election", limit=5)] == ["a"]
    errors: list[BaseException] = []

    def write_many(start: int) -> None:
        try:
            writer.upsert(doc(f"id{start + n}", f"title {start + n}") for n in range(50))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write_many, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert reader.count() == 201


def test_titles_only_ranks_on_the_headline(index: KeywordIndex) -> None:
    assert [i for i, _ in index.search("storm", limit=10, titles_only=True)] == ["storm"]
    assert index.search("harbour", limit=10, titles_only=True) == []
    assert [i for i, _ in index.search("harbour", limit=10)] == ["storm"]


def test_titles_only_follows_upserts_of_the_same_id(index: KeywordIndex) -> None:
    index.upsert([doc("storm", "Harbour reopens", "Heavy rain and wind hit the harbour town.")])
    assert index.search("storm", limit=10, titles_only=True) == []
    assert [i for i, _ in index.search("harbour", limit=10, titles_only=True)] == ["storm"]


def test_an_index_file_without_the_headline_table_gets_it_filled(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    KeywordIndex(path).upsert([doc("storm", "Storm floods the coast"), doc("b", "Budget vote")])
    with sqlite3.connect(path) as db:  # what an index written before the table looked like
        db.execute("DROP TABLE titles_fts")
    reopened = KeywordIndex(path)
    assert [i for i, _ in reopened.search("storm", limit=10, titles_only=True)] == ["storm"]
    assert [i for i, _ in reopened.search("budget", limit=10, titles_only=True)] == ["b"]


def test_filtered_and_unfiltered_rankings_agree(index: KeywordIndex) -> None:
    everything = SearchFilters(since=0)  # a filter that keeps every article takes the join
    for query in ("storm", "rain vote", "budget storm harbour"):
        for titles_only in (False, True):
            plain = index.search(query, limit=10, titles_only=titles_only)
            joined = index.search(query, limit=10, filters=everything, titles_only=titles_only)
            assert plain == joined


def test_stop_words_are_dropped_unless_the_query_has_nothing_else() -> None:
    assert match_expression("the floods in the north") == '"floods" OR "north"'
    assert match_expression("to be or not to be") == '"not"'
    assert match_expression("the of and") == '"the" OR "of" OR "and"'


def test_a_damaged_index_file_is_a_transient_error(tmp_path: Path) -> None:
    idx = KeywordIndex(tmp_path / "k.sqlite")
    idx.upsert([doc("a", "Election results", "")])
    idx._reader().execute("DROP TABLE docs_fts")  # what a damaged file looks like to a query
    with pytest.raises(TransientError):
        idx.search("election", limit=5)


def test_delete_removes_an_article_from_both_tables(index: KeywordIndex) -> None:
    assert index.delete(["storm", "unknown"]) == 1
    assert [i for i, _ in index.search("storm", limit=5)] == ["rain"]
    assert index.search("floods", limit=5, titles_only=True) == []
    assert index.count() == 2
    assert index.delete(["storm"]) == 0
