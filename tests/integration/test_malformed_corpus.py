"""Every file of feedparser's test corpus through the real fetch-and-parse path.

A local HTTP server on 127.0.0.1 serves each file with the ``Header:`` lines of its header
comment sent as HTTP headers; the producer's fetcher (SSRF guard, caps, deadline) fetches it
and the sandboxed parser pool parses it. Each file must end as a feed (with its entries) or a
named error, within bounded time, and no produced text may carry active markup.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from core.errors import FeedError
from core.metrics import FetchResult
from producers.fetcher import Fetcher
from producers.parser import ParsedFeed
from producers.sandbox import ParserPool

from conftest import require_shared_data

pytestmark = pytest.mark.integration

EXPECTED_FILES = 2107
_COMMENT = re.compile(rb"<!--(.*?)-->", re.S)
# Written independently of the parser's own safety net, on purpose.
_SCRIPT = re.compile(r"<\s*(script|iframe)\b", re.I)
_HANDLER = re.compile(r"<[^>]*\son\w+\s*=", re.I)
_JS_URL = re.compile(r"<[^>]*(javascript|vbscript)\s*:", re.I)


def header_lines(body: bytes) -> list[tuple[str, str]]:
    """The ``Header: Name: value`` lines of a corpus file's first comment."""
    match = _COMMENT.search(body)
    if not match:
        return []
    headers = []
    for line in match.group(1).splitlines():
        line = line.strip()
        if line.startswith(b"Header:"):
            name, _, value = line[len(b"Header:") :].strip().partition(b":")
            headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    return headers


class CorpusServer:
    def __init__(self, root: Path) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = (root / unquote(self.path.lstrip("/"))).resolve()
                if root not in path.parents or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                headers = header_lines(body)
                self.send_response(200)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    self.send_header("Content-Type", "application/xml")
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def corpus() -> Iterator[tuple[Path, list[Path], CorpusServer]]:
    root = require_shared_data("malformed", "feedparser", "tests").resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    server = CorpusServer(root)
    yield root, files, server
    server.close()


def active_markup(parsed: ParsedFeed) -> list[str]:
    found = []
    for article in parsed.articles:
        for field in ("title", "summary", "content"):
            text = getattr(article, field)
            for rule in (_SCRIPT, _HANDLER, _JS_URL):
                if rule.search(text):
                    found.append(f"{field}: {text[:120]!r}")
    return found


def test_every_corpus_file_ends_as_entries_or_a_named_error(
    corpus: tuple[Path, list[Path], CorpusServer],
) -> None:
    root, files, server = corpus
    assert len(files) == EXPECTED_FILES
    fetcher = Fetcher(deadline_s=10, allow_networks=[f"127.0.0.1:{server.port}"])
    pool = ParserPool(2, cpu_s=5, timeout_s=20)
    named = {str(k) for k in FetchResult}

    def one(path: Path) -> tuple[str, str, list[str]]:
        rel = path.relative_to(root).as_posix()
        url = f"http://127.0.0.1:{server.port}/{quote(rel)}"
        try:
            response = fetcher.fetch(url)
            parsed = pool.parse(
                response.body, feed_url=url, feed_id="corpus", headers=response.headers
            )
        except FeedError as exc:
            return rel, str(exc.kind), []
        return rel, "entries" if parsed.articles else "feed without entries", active_markup(parsed)

    try:
        with ThreadPoolExecutor(max_workers=6) as executor:
            results = list(executor.map(one, files, timeout=600))
    finally:
        pool.close()
        fetcher.close()
    outcomes = Counter(outcome for _rel, outcome, _bad in results)
    unnamed = [
        (rel, o) for rel, o, _ in results if o not in named | {"entries", "feed without entries"}
    ]
    assert not unnamed, unnamed[:10]
    leaks = [(rel, bad) for rel, _o, bad in results if bad]
    assert not leaks, leaks[:10]
    # The corpus is mostly well-formed feeds: most must yield entries, and the sanitizer cases
    # (745 files, 561 of them with entries) must have been parsed, not refused.
    assert outcomes["entries"] > 800, outcomes
    sanitize = [o for rel, o, _ in results if rel.startswith("wellformed/sanitize/")]
    assert sanitize.count("entries") >= 550, Counter(sanitize)
