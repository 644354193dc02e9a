"""Stage 3, the quality gate: keep articles worth indexing, reject the rest with a reason.

What goes in: a :class:`consumers.clean.CleanArticle` and the gate's parameters. What comes
out: ``None`` (keep) or one :class:`core.metrics.RejectReason` from the closed set, checked in
this order (the first that applies wins):

- ``empty``: no title and no body text;
- ``too_short``: fewer than ``min_chars`` characters or ``min_words`` words in title + body;
- ``not_text``: under 40% letters (tables of numbers, symbol runs, encoded blobs);
- ``boilerplate``: a short text that is a cookie wall, consent notice, "enable JavaScript",
  paywall or bot-check page instead of the article;
- ``not_article``: a bare video, podcast, gallery or live-blog stub (a media marker in the
  title or link and almost no text of its own);
- ``spam``: shouting (mostly upper case), link farms, one word repeated over and over, or
  several classic spam phrases;
- ``bad_date``: a published date in the future (beyond ``max_future_s`` of clock skew) or
  before 1990 (a parse artefact such as the epoch);
- ``language``: the detected language is confidently outside ``allowed_languages``.

Long texts are never rejected (the embedder truncates them to the model's limit). The gate is
pure: no I/O, the language model ships inside the ``py3langid`` package and loads once.

:class:`QualityGate` is the worker's step around it: a rejected item gets its reason (a final
outcome), and is also kept in the bounded reject sample when one is given
(:mod:`consumers.rejects`, shown by ``newsstream rejects``); the sample is advisory, so a failed
write is logged and the message goes on to its outcome.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from consumers.clean import CleanArticle
from consumers.item import Item
from consumers.rejects import RejectSample
from core.metrics import STAGE_SECONDS, RejectReason, Stage

log = logging.getLogger(__name__)

#: 1990-01-01T00:00:00Z: anything earlier in a news feed is a parse artefact.
EARLIEST_PUBLISHED = 631_152_000
#: Below this many characters a language guess is a coin toss: never reject on it.
MIN_CHARS_FOR_LANGUAGE = 40
#: Probability the detector must reach before a language rejection.
LANGUAGE_CONFIDENCE = 0.9
#: Boilerplate only counts on a text this short (a real article may mention cookies).
BOILERPLATE_MAX_CHARS = 600
#: A media stub has at most this much text beyond its title.
MEDIA_STUB_MAX_BODY = 120

_BOILERPLATE = re.compile(
    r"\b(?:we use cookies|this (?:site|website) uses cookies|accept (?:all )?cookies|"
    r"cookie (?:policy|settings|preferences|consent)|manage (?:your )?consent|"
    r"enable javascript|javascript is (?:disabled|required)|turn on javascript|"
    r"please enable cookies|your browser (?:is not supported|does not support)|"
    r"subscribe to (?:continue|read)|to continue reading|sign in to (?:continue|read)|"
    r"this content is (?:not available|only available)|not available in your (?:region|country)|"
    r"are you a robot|verify (?:that )?you are (?:a )?human|access denied|"
    r"checking your browser|captcha)\b",
    re.IGNORECASE,
)
_MEDIA_TITLE = re.compile(
    r"^\s*(?:video|watch|podcast|listen|audio|gallery|photos?|in pictures|pictures|live|"
    r"live updates|livestream|slideshow)\s*[:\-–—|]",
    re.IGNORECASE,
)
_MEDIA_PATH = re.compile(
    r"/(?:videos?|podcasts?|audio|galler(?:y|ies)|photos|pictures|slideshows?|live|watch)(?:/|$)",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_SPAM_PHRASES = re.compile(
    r"\b(?:casino|viagra|cialis|payday loans?|work from home|earn \$?\d+|make money fast|"
    r"100% free|click here|act now|limited time offer|crypto giveaway|double your|"
    r"weight loss|xxx|porn|hot singles|buy followers|risk[- ]free)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+", re.UNICODE)

_identifier: Any = None  # py3langid's LanguageIdentifier (the package ships no type hints)
_identifier_lock = threading.Lock()


def _language_identifier() -> Any:
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import (
                MODEL_FILE,
                LanguageIdentifier,
            )

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _identifier


def language_guess(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of ``text``'s language; ``("", 0.0)`` for no text."""
    if not any(ch.isalpha() for ch in text):
        return "", 0.0
    code, probability = _language_identifier().classify(text[:2000])
    return str(code), float(probability)


def detect_language(text: str) -> str:
    """The ISO 639-1 code of ``text``'s most likely language (``""`` when it has no letters).

    For the article's ``language`` field. Short texts give unreliable guesses (see
    :data:`MIN_CHARS_FOR_LANGUAGE`); the code is still the detector's best one.
    """
    return language_guess(text)[0]


def check_quality(
    clean: CleanArticle,
    *,
    min_chars: int = 40,
    min_words: int = 5,
    allowed_languages: frozenset[str] | None = None,
    now: float | None = None,
    max_future_s: float = 86_400.0,
) -> RejectReason | None:
    """The reason to reject ``clean``, or ``None`` to keep it (see the module docstring).

    ``allowed_languages``: ISO 639-1 codes, ``None`` for all. ``now``: epoch seconds for the
    date check (default: the clock).
    """
    text = clean.text
    stripped = text.strip()
    if not stripped:
        return RejectReason.EMPTY
    words = _WORD.findall(stripped)
    if len(stripped) < min_chars or len(words) < min_words:
        return RejectReason.TOO_SHORT
    visible = [ch for ch in stripped if not ch.isspace()]
    letters = sum(ch.isalpha() for ch in visible)
    if letters < len(visible) * 0.4:
        return RejectReason.NOT_TEXT
    if len(stripped) <= BOILERPLATE_MAX_CHARS and _BOILERPLATE.search(stripped):
        return RejectReason.BOILERPLATE
    if _is_media_stub(clean):
        return RejectReason.NOT_ARTICLE
    if _is_spam(stripped, words, letters):
        return RejectReason.SPAM
    published = clean.article.published_at
    if published is not None:
        clock = time.time() if now is None else now
        if published > clock + max_future_s or published < EARLIEST_PUBLISHED:
            return RejectReason.BAD_DATE
    if allowed_languages is not None and len(stripped) >= MIN_CHARS_FOR_LANGUAGE:
        code, probability = language_guess(stripped)
        if probability >= LANGUAGE_CONFIDENCE and code not in allowed_languages:
            return RejectReason.LANGUAGE
    return None


def _is_media_stub(clean: CleanArticle) -> bool:
    body = clean.body
    if clean.title and body.startswith(clean.title):
        body = body[len(clean.title) :]
    if len(body.strip()) > MEDIA_STUB_MAX_BODY:
        return False
    path = urlsplit(clean.article.url).path if clean.article.url else ""
    return bool(_MEDIA_TITLE.search(clean.title) or _MEDIA_PATH.search(path))


def _is_spam(text: str, words: list[str], letters: int) -> bool:
    if letters >= 40:
        upper = sum(ch.isupper() for ch in text)
        if upper > 0.7 * letters:
            return True
    urls = len(_URL.findall(text))
    if urls >= 5 or (urls >= 2 and urls * 4 > len(words)):
        return True
    if len(words) >= 20:
        counts: dict[str, int] = {}
        for word in words:
            key = word.casefold()
            counts[key] = counts.get(key, 0) + 1
        if max(counts.values()) > 0.3 * len(words):
            return True
    return len(set(m.casefold() for m in _SPAM_PHRASES.findall(text))) >= 2


class QualityGate:
    """The quality step: in, a cleaned item; out, the same item, or a rejected one."""

    def __init__(
        self,
        *,
        min_chars: int,
        min_words: int = 5,
        allowed_languages: frozenset[str] | None = None,
        max_future_s: float = 86_400.0,
        rejects: RejectSample | None = None,
    ) -> None:
        self._min_chars = min_chars
        self._min_words = min_words
        self._languages = allowed_languages
        self._max_future_s = max_future_s
        self._rejects = rejects

    def __call__(self, item: Item) -> Item:
        if item.final or item.clean is None:
            return item
        started = time.perf_counter()
        reason = check_quality(
            item.clean,
            min_chars=self._min_chars,
            min_words=self._min_words,
            allowed_languages=self._languages,
            max_future_s=self._max_future_s,
        )
        STAGE_SECONDS.labels(Stage.QUALITY).observe(time.perf_counter() - started)
        if reason is None:
            return item
        self._sample(reason, item.clean)
        # The rejected item keeps its decoded article: the ledger files the outcome under its
        # id, with its url, feed and fetch time.
        return replace(item, article=item.clean.article, clean=None, reject=reason)

    def _sample(self, reason: RejectReason, clean: CleanArticle) -> None:
        if self._rejects is None:
            return
        article = clean.article
        try:
            self._rejects.add(
                reason=reason.value,
                article_id=article.id,
                title=clean.title,
                url=article.url or "",
                text=clean.text,
            )
        except sqlite3.Error as exc:  # advisory: never hold or fail a message for the sample
            log.warning("could not keep rejected article %s in the sample: %s", article.id, exc)
