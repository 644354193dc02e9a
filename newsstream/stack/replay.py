"""Replay: serve the feed files of a directory from a local HTTP server on 127.0.0.1.

``newsstream up --replay DIR`` polls these instead of the real feeds, so the whole path runs
offline. Every ``*.xml``, ``*.rss``, ``*.atom`` and ``*.rdf`` file becomes one feed. The server
answers conditional GETs (ETag from the file's size and mtime), so a replayed feed that did not
change costs a 304.
"""

from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from producers.feeds import FeedSpec

FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf")


class _FeedHandler(SimpleHTTPRequestHandler):
    """Static files with ETag/If-None-Match support and no request logging."""

    def guess_type(self, path: Any) -> str:
        if str(path).endswith(".xml"):
            return "application/xml"
        return super().guess_type(path)

    def _etag(self, path: Path) -> str:
        stat = path.stat()
        return (
            '"' + hashlib.sha1(f"{stat.st_size}-{stat.st_mtime_ns}".encode()).hexdigest()[:16] + '"'
        )

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            etag = self._etag(path)
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return None
        return super().send_head()

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            self.send_header("ETag", self._etag(path))
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class ReplayServer:
    """A threaded static server for one directory; ``feeds()`` lists its feed URLs."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory.resolve()
        handler = partial(_FeedHandler, directory=str(self.directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def feeds(self) -> list[FeedSpec]:
        files = sorted(
            p for p in self.directory.iterdir() if p.is_file() and p.suffix in FEED_SUFFIXES
        )
        return [FeedSpec(url=f"{self.base_url}/{p.name}", name=p.stem) for p in files]
