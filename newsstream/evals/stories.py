"""``newsstream eval stories``: how well the story rule groups the reports of one event.

What goes in: the shared evaluation data (``eval/bbc-news`` with its silver pairs,
``eval/msrp/msrp_train.jsonl``, the 15 feeds of ``feeds/news``), an embedding function and a
:class:`consumers.story_rule.StoryRule` (the worker's defaults unless given). What comes out: a
JSON-able dict of results (:func:`run_eval`); :mod:`newsstream.cli.story_eval` prints it.
The stream simulations are :mod:`newsstream.evals.story_stream`'s.

Labels (BBC; :mod:`newsstream.evals.story_labels`): the silver pairs (by text overlap, not by people) and their **groups**
(connected components of the silver pairs). The 54 rewrites among them were also read by hand
(``story_judgements.csv``: 33 one event, 16 two events sharing background paragraphs, 5
unsure); a pair judged two events is no silver pair and links no group. Two documents are one
event when they are a silver pair; they are two events when judged so, when their categories
differ, or when both are in silver groups but in different ones; any other pair is unlabelled
(the BBC has same-event pairs the silver list misses).

Every part on BBC works on the documents the story stage of a worker would see: of each group
of exact copies and near-copies (silver pairs above the rewrite range) only the first, because
dedup removes the others before stories are assigned (joining copies would only flatter the
figures).

Parts:

- pairs: positives are the rewrites (silver, not exact, word-5 Jaccard 0.2 to 0.95), with the
  rewrites of one copy (Jaccard >= 0.5) and the rewrites judged one event as subsets (the
  stated recall goal is on the latter: ``recall_events``). Candidates are each document with its 10
  nearest by cosine; a candidate is flagged when the rule admits it (:func:`best_story` with the
  other document as the only seed, no time window: BBC has no dates). ``precision`` counts the
  labelled flagged pairs only; ``precision_strict`` counts unlabelled ones as wrong. Full texts
  and short items (title + first sentence); a curve over ``mid`` and ``strong`` of the bars the
  kind of text uses (``long`` for full texts, ``short`` for short items).
- stream: all BBC items in one shuffled order (seed 7), as the worker sees them: each article is
  compared with the seeds of the stories of its 16 nearest earlier articles (all in one window:
  the worst case). An article is falsely linked when its story holds another member that is a
  different event (as labelled above); the upper bound also counts members outside its silver
  group. Before (the old rule: the story of the single nearest earlier article, any member, at
  cosine >= 0.5, which chains) and after, for short items, title + 40 words and full texts.
- msrp: each sentence of a pair as a one-sentence item; the share of paraphrase and of
  non-paraphrase pairs the rule joins. MSRP's non-paraphrases come from clusters of one news
  event, so joining them is not necessarily wrong.
- feeds: a day of real feeds (quality rejects skipped) in published order, event time =
  published (else the capture time), the window applying: story sizes before and after.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress, TaskID

from consumers.story_rule import Bars, StoryFeatures, StoryRule, best_story
from newsstream.evals.dedup import BbcDoc, SilverPair, load_bbc, load_msrp
from newsstream.evals.feed_day import FeedItem, load_feed_day
from newsstream.evals.story_labels import (
    JUDGEMENTS,
    REWRITES,
    Labels,
    copies_removed,
    load_gaps,
    load_judgements,
    pair_key,
)
from newsstream.evals.story_stream import simulate_old, simulate_stream, story_sizes

EmbedFn = Callable[[list[str]], npt.NDArray[np.float32]]
TextKind = Literal["short", "cut", "full"]
BarsName = Literal["short", "long"]

#: Rewrites at or above this Jaccard were rewritten from one copy.
COPY_JACCARD = 0.5
#: Nearest documents per document whose pairs the pair evaluation judges.
PAIR_NEIGHBOURS = 10
MID_SWEEP = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
STRONG_SWEEP = (0.8, 0.85, 0.9, 0.95)
#: Hours of the weak bar's window (the texts tell days apart, not hours: every value under 24
#: gives the same figures).
WEAK_WINDOW_SWEEP_H = (12.0, 24.0, 48.0)
SHUFFLE_SEED = 7
#: Goals stated for users: precision at recall on rewrites, and false links on short items.
GOAL_PRECISION = 0.95
GOAL_RECALL = 0.8
GOAL_FALSE_LINK = 0.02
#: The bars each kind of text is mostly judged by (what a curve varies).
KIND_BARS: dict[TextKind, BarsName] = {"short": "short", "cut": "short", "full": "long"}
_SENTENCE_END = re.compile(r"[.!?][\"'”’)]*(?=\s)")


def first_sentence(body: str) -> str:
    """The first sentence of ``body`` (all of it when no sentence ends)."""
    match = _SENTENCE_END.search(body)
    return body[: match.end()] if match else body


def item_text(doc: BbcDoc, kind: TextKind) -> str:
    """The text of ``doc`` as a feed would carry it: ``short`` = title + first sentence,
    ``cut`` = title + 40 words, ``full`` = title + body."""
    if kind == "short":
        return f"{doc.title}. {first_sentence(doc.body)}"
    return doc.cut() if kind == "cut" else doc.full()


def no_window(rule: StoryRule) -> StoryRule:
    """``rule`` with every article in one event window (and in the weak bar's window)."""
    return replace(rule, window_s=math.inf, weak_window_s=math.inf)


def with_bars(
    rule: StoryRule, which: BarsName, *, mid: float | None = None, strong: float | None = None
) -> StoryRule:
    """``rule`` with the ``mid`` or ``strong`` threshold of its ``which`` bars replaced."""
    bars: Bars = getattr(rule, which)
    bars = replace(
        bars,
        mid=bars.mid if mid is None else mid,
        strong=bars.strong if strong is None else strong,
    )
    return replace(rule, short=bars) if which == "short" else replace(rule, long=bars)


def rule_dict(rule: StoryRule) -> dict[str, Any]:
    """The thresholds of ``rule`` as JSON."""
    return asdict(rule)


def features(
    ids: Sequence[str],
    titles: Sequence[str],
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    times: Sequence[float] | None = None,
) -> list[StoryFeatures]:
    """One seed (``story_id`` = own id) per item, as the worker builds them."""
    return [
        StoryFeatures.of(ids[i], ids[i], vectors[i], titles[i], texts[i], times[i] if times else 0)
        for i in range(len(ids))
    ]


def admits(rule: StoryRule, a: StoryFeatures, b: StoryFeatures) -> bool:
    """Whether the rule lets ``a`` join ``b``'s story, ``b`` being a seed (``best_story``)."""
    return best_story(rule, a, [b]) is not None


def candidate_pairs(vectors: npt.NDArray[np.float32], k: int) -> list[tuple[int, int]]:
    """Unordered pairs of each row with its ``k`` nearest other rows by cosine, sorted."""
    k = min(k, len(vectors) - 1)
    if k <= 0:
        return []
    cosine = vectors @ vectors.T
    np.fill_diagonal(cosine, -np.inf)
    nearest = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
    pairs = {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(nearest) for j in row}
    return sorted(pairs)


def pair_scores(
    items: Sequence[StoryFeatures],
    labels: Labels,
    positives: set[tuple[str, str]],
    copies: set[tuple[str, str]],
    candidates: Sequence[tuple[int, int]],
    rule: StoryRule,
    events: set[tuple[str, str]] | None = None,
    gaps: dict[tuple[str, str], float] | None = None,
) -> dict[str, Any]:
    """Precision (labelled and strict) and recall of the pairs the rule flags; ``events`` are
    the rewrites read and judged one event (``recall_events``). With ``gaps`` (days between
    the two articles of a pair, as their texts tell; unknown: none) the rule's windows apply to
    that time apart: a pair further apart than the window is never flagged, as the worker would
    never compare them, and the weak bar's window applies; without, no window is applied (the
    corpus has no dates)."""
    window_days = rule.window_s / 86_400
    undated = no_window(rule)
    verdicts: Counter[str] = Counter()
    found: set[tuple[str, str]] = set()
    for i, j in candidates:
        a, b = items[i], items[j]
        if gaps is None:
            joined = admits(undated, a, b)
        else:
            days = gaps.get(pair_key(a.id, b.id), 0.0)
            later = replace(b, event_time=a.event_time + days * 86_400)
            joined = days <= window_days and admits(rule, a, later)
        if not joined:
            continue
        verdicts[labels.judge(a.id, b.id)] += 1
        found.add(pair_key(a.id, b.id))
    flagged = sum(verdicts.values())
    labelled = verdicts["correct"] + verdicts["wrong"]
    return {
        "flagged": flagged,
        "correct": verdicts["correct"],
        "wrong": verdicts["wrong"],
        "unlabelled": verdicts["unlabelled"],
        "precision": round(verdicts["correct"] / labelled, 4) if labelled else 1.0,
        "precision_strict": round(verdicts["correct"] / flagged, 4) if flagged else 1.0,
        "recall": round(len(found & positives) / len(positives), 4) if positives else 1.0,
        "recall_copies": round(len(found & copies) / len(copies), 4) if copies else 1.0,
        "recall_events": round(len(found & events) / len(events), 4) if events else 1.0,
    }


def pair_report(
    items: Sequence[StoryFeatures],
    labels: Labels,
    pairs: Sequence[SilverPair],
    rule: StoryRule,
    bars: BarsName,
    judged: dict[tuple[str, str], str] | None = None,
    gaps: dict[tuple[str, str], float] | None = None,
) -> dict[str, Any]:
    """Pair scores at ``rule`` and over the ``mid`` and ``strong`` sweeps of its ``bars``,
    without the window and (``gaps`` given) with it: ``*_in_window`` figures."""
    low, high = REWRITES
    present = {item.id for item in items}
    rewrites = [
        p
        for p in pairs
        if not p.exact and low <= p.jaccard <= high and p.a in present and p.b in present
    ]
    positives = {pair_key(p.a, p.b) for p in rewrites}
    events = {k for k in positives if (judged or {}).get(k) == "yes"}
    copies = {pair_key(p.a, p.b) for p in rewrites if p.jaccard >= COPY_JACCARD}
    vectors = np.stack([item.vector for item in items])
    candidates = candidate_pairs(vectors, PAIR_NEIGHBOURS)
    keys = {pair_key(items[i].id, items[j].id) for i, j in candidates}
    chosen: Bars = getattr(rule, bars)
    curve = []
    sweeps = (("mid", MID_SWEEP), ("strong", STRONG_SWEEP), ("weak_h", WEAK_WINDOW_SWEEP_H))
    for name, values in sweeps:
        for value in values:
            if name == "weak_h":
                varied = replace(rule, weak_window_s=value * 3600)
                chosen_value = rule.weak_window_s / 3600
            else:
                varied = with_bars(rule, bars, **{name: value})
                chosen_value = getattr(chosen, name)
            scores = pair_scores(items, labels, positives, copies, candidates, varied, events)
            windowed = pair_scores(
                items, labels, positives, copies, candidates, varied, events, gaps or {}
            )
            curve.append(
                {"param": name, "value": value, "chosen": math.isclose(value, chosen_value)}
                | scores
                | {f"{k}_in_window": windowed[k] for k in ("precision", "recall_events")}
            )
    short_bars = sum(rule.bars(items[i].words, items[j].words) is rule.short for i, j in candidates)
    return {
        "bars_varied": bars,
        "positives": len(positives),
        "copies": len(copies),
        "candidates": len(candidates),
        "candidates_on_short_bars": short_bars,
        "positives_in_candidates": len(positives & keys),
        "events": len(events),
        "gaps_known": sum(1 for k in positives if k in (gaps or {})),
        "defaults": pair_scores(items, labels, positives, copies, candidates, rule, events),
        "defaults_in_window": pair_scores(
            items, labels, positives, copies, candidates, rule, events, gaps or {}
        ),
        "curve": curve,
    }


def false_links(ids: Sequence[str], stories: Sequence[str], labels: Labels) -> dict[str, Any]:
    """Items whose story holds another member that is a different event (``false_link_rate``),
    and items in a multi-item story with a member outside their silver group
    (``upper_bound``)."""
    members: dict[str, list[str]] = {}
    for doc_id, story in zip(ids, stories, strict=True):
        members.setdefault(story, []).append(doc_id)
    wrong = loose = 0
    for group in members.values():
        if len(group) < 2:
            continue
        categories = Counter(labels.category[d] for d in group)
        silver_groups = Counter(labels.group[d] for d in group if d in labels.group)
        for d in group:
            own_group = labels.group.get(d)
            other_category = categories[labels.category[d]] < len(group)
            other_group = own_group is not None and silver_groups[own_group] < sum(
                silver_groups.values()
            )
            wrong += other_category or other_group
            loose += own_group is None or silver_groups[own_group] < len(group)
    total = len(ids)
    return {
        "falsely_linked": wrong,
        "false_link_rate": round(wrong / total, 4) if total else 0.0,
        "upper_bound_linked": loose,
        "upper_bound": round(loose / total, 4) if total else 0.0,
    }


def msrp_report(
    msrp: Sequence[tuple[str, str, int]],
    first: npt.NDArray[np.float32],
    second: npt.NDArray[np.float32],
    rule: StoryRule,
) -> dict[str, Any]:
    """The share of paraphrase and non-paraphrase pairs the rule joins, each sentence a
    one-sentence item, at ``rule`` and over the ``mid`` sweep of its short bars."""
    items = [
        (
            StoryFeatures.of("a", "a", first[n], s1, s1, 0.0),
            StoryFeatures.of("b", "b", second[n], s2, s2, 0.0),
        )
        for n, (s1, s2, _) in enumerate(msrp)
    ]
    labels = np.array([label for _, _, label in msrp])

    def rates(varied: StoryRule) -> dict[str, Any]:
        varied = no_window(varied)
        joined = np.array([admits(varied, a, b) for a, b in items])
        return {
            "paraphrase_joined": round(float(joined[labels == 1].mean()), 4),
            "non_paraphrase_joined": round(float(joined[labels == 0].mean()), 4),
        }

    return {
        "pairs": len(msrp),
        "paraphrases": int(labels.sum()),
        "defaults": rates(rule),
        "curve": [
            {"mid": mid, "chosen": math.isclose(mid, rule.short.mid)}
            | rates(with_bars(rule, "short", mid=mid))
            for mid in MID_SWEEP
        ],
        "note": "MSRP non-paraphrases come from clusters of one news event: joining them is "
        "not necessarily wrong.",
    }


def feed_day_report(
    items: Sequence[FeedItem], vectors: npt.NDArray[np.float32], rule: StoryRule
) -> dict[str, Any]:
    """Story sizes of the feed day before and after, in published order (undated items at the
    capture time, the latest date seen), and the members of the 5 largest stories. The old
    rule gets no window: its window was on ingestion time, and one poll ingests a day at once."""
    capture = max((i.published_at for i in items if i.published_at), default=0)
    times = [float(i.published_at or capture) for i in items]
    order = sorted(range(len(items)), key=lambda n: times[n])
    ordered = [items[n] for n in order]
    ordered_vectors = vectors[order]
    ids = [i.id for i in ordered]
    feats = features(
        ids,
        [i.title for i in ordered],
        [i.text for i in ordered],
        ordered_vectors,
        [times[n] for n in order],
    )
    label = {i.id: f"{i.source}: {i.title}" for i in ordered}
    result: dict[str, Any] = {
        "items": len(items),
        "undated": sum(not i.published_at for i in items),
    }
    for name, stories in (
        ("before", simulate_old(ids, ordered_vectors)),
        ("after", simulate_stream(feats, rule)),
    ):
        report = story_sizes(stories)
        members: dict[str, list[str]] = {}
        for doc_id, story in zip(ids, stories, strict=True):
            members.setdefault(story, []).append(label[doc_id])
        largest = sorted(members.values(), key=len, reverse=True)[:5]
        report["largest_stories"] = [group for group in largest if len(group) > 1]
        result[name] = report
    return result


def _embed(
    embed: EmbedFn, texts: list[str], progress: Progress, task: TaskID, chunk: int = 64
) -> npt.NDArray[np.float32]:
    parts = []
    for start in range(0, len(texts), chunk):
        parts.append(embed(texts[start : start + chunk]))
        progress.advance(task, len(texts[start : start + chunk]))
    return np.concatenate(parts).astype(np.float32, copy=False)


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Whether the stated goals are met at the defaults."""
    out: dict[str, Any] = {}
    for kind in ("full", "short"):
        scores = results["pairs"][kind]["defaults_in_window"]
        out[f"rewrites_{kind}"] = {
            "precision": scores["precision"],
            "recall": scores["recall_events"],
            "met": scores["precision"] >= GOAL_PRECISION and scores["recall_events"] >= GOAL_RECALL,
        }
    rate = results["stream"]["short"]["after"]["false_link_rate"]
    out["false_links_short"] = {"rate": rate, "met": rate <= GOAL_FALSE_LINK}
    return out


def run_eval(
    data_dir: Path,
    embed: EmbedFn,
    *,
    rule: StoryRule | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Every part of the evaluation (see the module docstring) at ``rule`` (the defaults)."""
    rule = rule or StoryRule()
    console = console or Console()
    docs, pairs = load_bbc(data_dir / "eval" / "bbc-news")
    msrp = load_msrp(data_dir / "eval" / "msrp" / "msrp_train.jsonl")
    feed_items = load_feed_day(data_dir / "feeds" / "news")
    judged = load_judgements(JUDGEMENTS)
    labels = Labels.of(docs, pairs, judged)
    kinds: tuple[TextKind, ...] = ("short", "cut", "full")
    texts = {kind: [item_text(d, kind) for d in docs] for kind in kinds}
    sentences = sorted({s for s1, s2, _ in msrp for s in (s1, s2)})
    total = sum(map(len, texts.values())) + len(sentences) + len(feed_items)
    vectors: dict[TextKind, npt.NDArray[np.float32]] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("embedding", total=total)
        for kind in kinds:
            progress.update(task, description=f"embedding BBC ({kind})")
            vectors[kind] = _embed(embed, texts[kind], progress, task)
        progress.update(task, description="embedding MSRP sentences")
        sentence_vectors = _embed(embed, sentences, progress, task)
        progress.update(task, description="embedding the feed day")
        feed_vectors = _embed(embed, [i.text for i in feed_items], progress, task)
        work = progress.add_task("evaluating", total=4)
        ids = [d.doc_id for d in docs]
        titles = [d.title for d in docs]
        # The story stage never sees copies: dedup removed them first.
        kept = copies_removed(docs, pairs)
        ids = [docs[n].doc_id for n in kept]
        titles = [docs[n].title for n in kept]
        vectors = {kind: vectors[kind][kept] for kind in kinds}
        texts = {kind: [texts[kind][n] for n in kept] for kind in kinds}
        items = {kind: features(ids, titles, texts[kind], vectors[kind]) for kind in kinds}
        results: dict[str, Any] = {"rule": rule_dict(rule), "documents": len(kept)}
        results["pairs"] = {
            kind: pair_report(
                items[kind], labels, pairs, rule, KIND_BARS[kind], judged, load_gaps(JUDGEMENTS)
            )
            for kind in ("full", "short")
        }
        progress.advance(work)
        order = [int(n) for n in np.random.default_rng(SHUFFLE_SEED).permutation(len(ids))]
        shuffled = [ids[n] for n in order]
        stream: dict[str, Any] = {}
        for kind in kinds:
            before = simulate_old(shuffled, vectors[kind][order])
            after = simulate_stream([items[kind][n] for n in order], no_window(rule))
            stream[kind] = {
                name: story_sizes(stories) | false_links(shuffled, stories, labels)
                for name, stories in (("before", before), ("after", after))
            }
        results["stream"] = stream
        progress.advance(work)
        at = {s: n for n, s in enumerate(sentences)}
        results["msrp"] = msrp_report(
            msrp,
            sentence_vectors[[at[s1] for s1, _, _ in msrp]],
            sentence_vectors[[at[s2] for _, s2, _ in msrp]],
            rule,
        )
        progress.advance(work)
        results["feeds"] = feed_day_report(feed_items, feed_vectors, rule)
        progress.advance(work)
    results["goals"] = goals(results)
    return results
