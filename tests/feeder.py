"""Load while a fault happens: articles published in chunks on a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from core.article import Article
from core.settings import Settings
from producers.publisher import Publisher


class Feeder:
    """Publishes ``articles`` to the settings' articles topic, ``chunk`` at a time every
    ``every_s`` seconds, on a thread.

    ``delivered`` holds the ids whose delivery report succeeded (the test's ledger);
    ``until`` (optional) stops it before the next chunk once it returns True (the articles left
    are never published). :meth:`join` raises what the thread met.
    """

    def __init__(
        self,
        settings: Settings,
        articles: list[Article],
        chunk: int,
        every_s: float,
        until: Callable[[], bool] | None = None,
    ):
        self._publisher = Publisher(settings, client_id="test-feeder")
        self._articles = articles
        self._chunk = chunk
        self._every_s = every_s
        self._until = until
        self.delivered: set[str] = set()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for start in range(0, len(self._articles), self._chunk):
                if self._until is not None and self._until():
                    return
                chunk = self._articles[start : start + self._chunk]
                self.delivered |= self._publisher.publish(chunk, timeout_s=60)
                time.sleep(self._every_s)
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)

    def join(self, timeout_s: float) -> set[str]:
        """The delivered ids, once the thread ended within ``timeout_s`` without an error."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the feeder did not finish"
        self._publisher.close()
        assert not self.errors, self.errors
        return self.delivered
