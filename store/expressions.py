"""Literals of Milvus boolean expressions, escaped (never string-built from raw input)."""

from __future__ import annotations


def quote_literal(value: str) -> str:
    """A Milvus string literal that matches exactly ``value`` (backslash and quote escaped).

    Callers validate what may reach an expression (see ``search_api.filters``); this only
    escapes.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
