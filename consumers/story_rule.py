"""The story rule: when two articles report one event (pure; no Milvus, no Kafka).

A story is one happening reported by several outlets or rewritten from one wire copy. Topic
similarity is not enough: two baseball results, or two days of oil-price news, are close in
embedding space and still different events. So an article joins a story only when:

1. it is compared with the story's **representative** (its first article, the "seed"), never
   with any other member: membership cannot chain from a to b to c and drift into a topic;
2. the seed's event time (published, else ingested) is within ``window_s`` of the article's:
   an event is news for hours to a few days, not for the whole dedup window; and a join below
   the strong cosine bar needs the two within ``weak_window_s`` (a news cycle): a follow-up a
   day later repeats the first report's background, names and numbers and stays close to it,
   yet reports a later development (the reactions to a deal, a trial's second day);
3. two signals agree: the dense cosine of the two embeddings, and the words they share.
   Either the cosine is very high ("strong") and at least one **key term** is shared
   (:func:`story_terms`: the title's content words plus the names and numbers of the lead), or
   the cosine is high and several key terms are shared and, when both articles name anything,
   a **name or number** too (:func:`story_names`: "Japan" and "Monday" are shared by two
   reports of one quake, not by a quake in Chile on Tuesday);
4. the thresholds depend on what the texts are: when the shorter of the two has fewer than
   ``short_words`` words (a headline and a sentence or two, the common feed item) the cosine
   bars are lower (short rewrites of one event drift apart in embedding space) and more shared
   terms are required (short texts of one topic share little else).

Among the seeds that pass, the one with the highest cosine wins. The thresholds were chosen on
labelled data (``newsstream eval stories``; figures in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: Function words that never make two articles one event (English and Spanish, the languages
#: of most feeds seen; other languages keep all their words, which only makes the rule stricter).
_STOPWORDS_TEXT = """a an the and or but nor of in on at to for from by with as is are was were be been being
    has have had do does did it its this that these those he she they we you i his her their our
    your not no yes after before over under into out up down off new says say said will would
    could should may might can cannot must than then there here when where who whom whose which
    what why how all any some more most other such only own same so too very just also about
    against between through during above below again further once both each few mr mrs ms dr
    vs via amid per
    el la los las un una unos unas y o de del al en por para con sin sobre es son fue ser que
    se su sus lo le les como más pero ya"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[^\W_](?:[\w'’&.-]*[^\W_])?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Words of the lead looked at (a first sentence that never ends stops here).
LEAD_WORDS = 50


def _normal(token: str) -> str:
    """Lower case, no possessive, no plural ``s`` ("Gales" and "gale" are one term)."""
    word = token.lower().strip(".'’")
    for suffix in ("'s", "’s"):
        word = word.removesuffix(suffix)
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss") and word.isalpha():
        word = word[:-1]
    return word


def _words(text: str) -> list[str]:
    """The word tokens of ``text``; hyphenated words give their parts ("gale-force")."""
    return [part for token in _WORD.findall(text) for part in token.split("-") if part]


def _distinctive_number(word: str) -> bool:
    """A word with at least two digits ("50", "$110,000", "2004", "g20"): one digit alone (a
    score, a rank) is shared by too many unrelated reports to tell events apart."""
    return sum(c.isdigit() for c in word) >= 2


def lead_sentence(title: str, text: str) -> str:
    """The first sentence of ``text`` after the title (the worker's text starts with it), at
    most ``LEAD_WORDS`` words."""
    body = text[len(title) :].lstrip(" .:-") if title and text.startswith(title) else text
    first = _SENTENCE_END.split(body.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:LEAD_WORDS])


def story_terms(title: str, text: str) -> frozenset[str]:
    """The key terms of an article: what two reports of one event share beyond their topic.

    What goes in: the title and the stored text (title, then body). What comes out: lower-cased
    terms: every content word of the title (not a stop word, three characters or more, or with
    two digits or more), plus the words of the lead sentence that carry a name or a number
    (capitalised and not a stop word, or with two digits or more). Hyphenated words count by
    their parts; a plural ``s`` and a possessive are dropped. Scripts without letter case contribute their title
    words only."""
    terms: set[str] = set()
    for token in _words(title):
        word = _normal(token)
        if word in STOPWORDS:
            continue
        if _distinctive_number(word) or (len(word) >= 3 and not word.isdigit()):
            terms.add(word)
    for token in _words(lead_sentence(title, text)):
        word = _normal(token)
        if word in STOPWORDS or len(word) < 2:
            continue
        if _distinctive_number(word) or token[0].isupper():
            terms.add(word)
    return frozenset(terms)


def _cased(text: str) -> bool:
    """Whether ``text`` is written in a script with letter case (Latin, Greek, Cyrillic...)."""
    return any(c.islower() for c in text)


def _title_case(tokens: list[str]) -> bool:
    """Whether a title capitalises (nearly) every word ("Oil Prices Rise As Opec Cuts Output"):
    then its capitals say nothing about names."""
    content = [t for t in tokens if t[:1].isalpha() and _normal(t) not in STOPWORDS]
    return len(content) >= 3 and sum(t[0].isupper() for t in content) >= 0.8 * len(content)


def story_names(title: str, text: str) -> frozenset[str] | None:
    """The names and numbers of an article: what one event's reports share and one topic's
    different events do not ("Japan" and "Monday" against "Chile" and "Tuesday").

    What comes out: lower-cased words capitalised inside a sentence of the title (unless the
    title capitalises every word) or of the lead sentence, and words with two digits or more;
    stop words never. ``None`` for a script without letter case, where names cannot be told
    apart (the rule then relies on the key terms alone)."""
    if not _cased(title + text[:200]):
        return None
    names: set[str] = set()
    title_tokens = _words(title)
    sentences = [] if _title_case(title_tokens) else [title_tokens]
    sentences.append(_words(lead_sentence(title, text)))
    # A capitalised word that opens a sentence is a name only when the article capitalises it
    # again ("Intel unveils ... Intel has"); otherwise it may be any word ("Strong quake ...").
    capitalised = [_normal(t) for tokens in sentences for t in tokens if t[:1].isupper()]
    for tokens in sentences:
        for position, token in enumerate(tokens):
            word = _normal(token)
            if word in STOPWORDS or len(word) < 2:
                continue
            named = token[0].isupper() and (position > 0 or capitalised.count(word) > 1)
            if named or _distinctive_number(word):
                names.add(word)
    return frozenset(names)


def word_count(text: str) -> int:
    """Words of ``text`` (what decides whether the short-text thresholds apply)."""
    return len(text.split())


@dataclass(frozen=True)
class Bars:
    """One set of thresholds: join at ``cosine >= strong`` with ``min_terms`` shared key terms,
    or at ``cosine >= mid`` with ``mid_terms`` shared key terms."""

    strong: float
    mid: float
    mid_terms: int
    min_terms: int = 1

    def admits(self, cosine: float, shared: int) -> bool:
        """Whether a cosine and a count of shared key terms make one event."""
        if shared < self.min_terms:
            return False
        return cosine >= self.strong or (cosine >= self.mid and shared >= self.mid_terms)


@dataclass(frozen=True)
class StoryRule:
    """The thresholds of the story rule (see the module docstring); defaults as measured."""

    long: Bars = field(default_factory=lambda: Bars(strong=0.90, mid=0.75, mid_terms=2))
    short: Bars = field(default_factory=lambda: Bars(strong=0.85, mid=0.65, mid_terms=3))
    #: Below this many words in the shorter text, the ``short`` bars apply.
    short_words: int = 150
    #: Longest time between a story's first article and a new one (seconds).
    window_s: float = 48 * 3600.0
    #: Longest time between a story's first article and a new one joining below the strong
    #: cosine bar (seconds): one news cycle.
    weak_window_s: float = 12 * 3600.0
    #: Names or numbers two reports must share (when both have some: a text without letter
    #: case, or without any name, relies on the key terms alone).
    min_names: int = 1

    def lowest_cosine(self) -> float:
        """The lowest cosine any of the bars admits: two articles further apart are never one
        event, whatever else they share."""
        return min(self.long.strong, self.long.mid, self.short.strong, self.short.mid)

    def bars(self, words_a: int, words_b: int) -> Bars:
        """The bars for two texts of these lengths."""
        return self.short if min(words_a, words_b) < self.short_words else self.long

    def evidence(
        self, a: StoryFeatures, b: StoryFeatures, gap_s: float = 0.0
    ) -> tuple[float, int] | None:
        """``(cosine, shared key terms)`` when ``a`` and ``b``, ``gap_s`` seconds apart, report
        one event by their content (names, key terms and cosine) and, below the strong bar, are
        within ``weak_window_s``; else None. ``window_s`` is not looked at (:func:`best_story`
        does)."""
        cosine = float(np.dot(a.vector, b.vector))
        shared = len(a.terms & b.terms)
        bars = self.bars(a.words, b.words)
        if not bars.admits(cosine, shared):
            return None
        # Below the strong bar, topic words and a close embedding are not enough: the reports
        # must name the same place, person, day or figure (when both name any).
        unnamed = a.names and b.names and len(a.names & b.names) < self.min_names
        if unnamed and cosine < bars.strong:
            return None
        if cosine < bars.strong and gap_s > self.weak_window_s:
            return None
        return cosine, shared


@dataclass(frozen=True)
class StoryFeatures:
    """What the rule needs of one article: its unit-length embedding, key terms, length and
    event time (published, else ingested; epoch seconds); ``story_id`` is its story (for a
    seed, its own id)."""

    id: str
    story_id: str
    vector: npt.NDArray[np.float32]
    terms: frozenset[str]
    words: int
    event_time: float
    names: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        article_id: str,
        story_id: str,
        vector: Iterable[float] | npt.NDArray[np.float32],
        title: str,
        text: str,
        event_time: float,
    ) -> StoryFeatures:
        """Features from stored fields (title, text) and an embedding."""
        return cls(
            id=article_id,
            story_id=story_id,
            vector=np.asarray(vector, dtype=np.float32),
            terms=story_terms(title, text),
            words=word_count(text),
            event_time=float(event_time),
            names=story_names(title, text),
        )

    @property
    def is_seed(self) -> bool:
        """Whether this article is its story's representative (its first article)."""
        return self.story_id == self.id


@dataclass(frozen=True)
class StoryMatch:
    """The seed an article joins, with the evidence (for logs and evaluations)."""

    story_id: str
    cosine: float
    shared_terms: int


def best_story(
    rule: StoryRule, article: StoryFeatures, seeds: Sequence[StoryFeatures]
) -> StoryMatch | None:
    """The story ``article`` joins among the representatives ``seeds``, or None (it starts a
    story of its own). Seeds that are not representatives (``story_id != id``), the article
    itself and seeds outside the time window are ignored."""
    best: StoryMatch | None = None
    for seed in seeds:
        if not seed.is_seed or seed.id == article.id:
            continue
        gap_s = abs(seed.event_time - article.event_time)
        if gap_s > rule.window_s:
            continue
        evidence = rule.evidence(article, seed, gap_s)
        if evidence is not None and (best is None or evidence[0] > best.cosine):
            best = StoryMatch(seed.story_id, *evidence)
    return best


#: Slack below :meth:`StoryRule.lowest_cosine` for the stacked product of :class:`SeedPool`,
#: whose rounding may differ from :meth:`StoryRule.evidence`'s own dot product in the last bits.
_POOL_SLACK = 1e-4


class SeedPool:
    """Seeds compared with many articles (a batch against every candidate seed).

    What goes in: the rule and the seeds, in the order :func:`best_story` should see them.
    What comes out: for an article, :meth:`near` gives the seeds, in that order, whose cosine
    to it reaches the rule's lowest bar; the others could never pass a bar, so
    ``best_story(rule, article, pool.near(article))`` decides as
    ``best_story(rule, article, seeds)`` does, with one matrix product instead of a Python loop
    over every seed."""

    def __init__(self, rule: StoryRule, seeds: Sequence[StoryFeatures]) -> None:
        self.seeds = list(seeds)
        self._floor = rule.lowest_cosine() - _POOL_SLACK
        self._matrix = np.stack([seed.vector for seed in self.seeds]) if self.seeds else None

    def near(self, article: StoryFeatures) -> list[StoryFeatures]:
        """The seeds within the rule's lowest cosine bar of ``article``, in pool order."""
        if self._matrix is None:
            return []
        cosines = self._matrix @ article.vector
        return [self.seeds[int(n)] for n in np.flatnonzero(cosines >= self._floor)]
