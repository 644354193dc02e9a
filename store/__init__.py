"""The index: article rows in Milvus, and the keyword index beside servers without BM25.

What it holds: the typed row and its limits (``row``), the collection's schema, field names and
creation (``schema``), the Milvus client factory (``client``), escaped expression literals
(``expressions``), the one writer of rows, whole or partial (``writer``), the SQLite keyword
index (``keyword_index``), and the index and compaction waits of bulk loads (``compaction``).

Dependency rule: this package imports only :mod:`core` and itself; nothing in :mod:`core`
imports it. Every write of article rows goes through :class:`store.writer.ArticleWriter`.
"""
