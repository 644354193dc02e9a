"""Pure parts of the Milvus layer: the ``also_reported_by`` codec and literal quoting."""

from __future__ import annotations

from typing import Any

import pytest

from store.expressions import quote_literal
from store.row import decode_sources, encode_sources
from store.schema import milvus_version_before

SOURCES = [{"source": "a.example", "url": "https://a.example/1"}]


def test_sources_are_written_as_an_object_and_read_back() -> None:
    value = encode_sources(SOURCES)
    assert isinstance(value, dict)  # Milvus 2.3 refuses a bare JSON array
    assert decode_sources(value) == SOURCES


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (SOURCES, SOURCES),  # the bare list earlier versions wrote
        ({"sources": [*SOURCES, "junk", 3]}, SOURCES),
        (None, []),
        ({}, []),
        ("text", []),
        ({"sources": "text"}, []),
    ],
)
def test_decoding_accepts_old_rows_and_ignores_junk(stored: Any, expected: Any) -> None:
    assert decode_sources(stored) == expected


def test_quote_literal_escapes_quotes_and_backslashes() -> None:
    assert quote_literal('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize(
    ("version", "before"),
    [
        ("v2.3.5-lite", True),
        ("v2.4.15", True),
        ("2.5.0", False),
        ("v2.6.1-gpu", False),
        ("milvus_lite-3.2.2", False),
        ("", False),
        ("unknown", False),
    ],
)
def test_servers_before_2_5_are_known_to_lack_bm25(version: str, before: bool) -> None:
    assert milvus_version_before(version, (2, 5)) is before
