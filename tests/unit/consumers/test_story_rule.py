"""The story rule: one event needs two agreeing signals, a seed, and a time window."""

from __future__ import annotations

import numpy as np

from consumers.story_rule import (
    Bars,
    SeedPool,
    StoryFeatures,
    StoryRule,
    best_story,
    lead_sentence,
    story_names,
    story_terms,
)

DAY = 86_400.0


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def item(
    ident: str,
    vector: np.ndarray,
    title: str,
    lead: str = "",
    *,
    story: str | None = None,
    at: float = 0.0,
    words: int | None = None,
) -> StoryFeatures:
    text = f"{title}. {lead}" if lead else title
    features = StoryFeatures.of(ident, story or ident, vector, title, text, at)
    if words is not None:
        features = StoryFeatures(
            features.id, features.story_id, features.vector, features.terms, words, at
        )
    return features


def test_terms_are_title_words_and_the_names_and_numbers_of_the_lead() -> None:
    terms = story_terms(
        "Braves 6, Padres 5",
        "Braves 6, Padres 5. In the ninth, Andruw Jones homered twice for Atlanta on 12 June 2005.",
    )
    assert {"brave", "padre", "andruw", "jone", "atlanta", "june", "12", "2005"} <= terms
    assert "homered" not in terms  # a lower-case word of the lead is no key term
    assert "in" not in terms and "the" not in terms
    assert "6" not in terms and "5" not in terms  # one digit: a score, shared by many events


def test_the_lead_is_the_first_sentence_after_the_title() -> None:
    assert lead_sentence("Title", "Title. One two. Three four.") == "One two."
    assert lead_sentence("Other", "No title prefix here. Second.") == "No title prefix here."


def test_a_caseless_script_keeps_its_title_words() -> None:
    assert story_terms("ارتفاع أسعار النفط", "ارتفاع أسعار النفط. نص") == {
        "ارتفاع",
        "أسعار",
        "النفط",
    }


def test_bars_need_shared_terms_as_well_as_a_high_cosine() -> None:
    bars = Bars(strong=0.9, mid=0.75, mid_terms=2)
    assert bars.admits(0.95, 1)
    assert not bars.admits(0.99, 0), "a very high cosine alone is topic, not event"
    assert bars.admits(0.8, 2)
    assert not bars.admits(0.8, 1)
    assert not bars.admits(0.7, 5)


def test_short_texts_use_the_short_bars() -> None:
    rule = StoryRule()
    assert rule.bars(20, 900) is rule.short
    assert rule.bars(400, 900) is rule.long


def test_two_results_of_one_sport_on_one_day_are_not_one_event() -> None:
    rule = StoryRule()
    seed = item("a", unit(1, 0.3, 0), "Braves 6, Padres 5", "Andruw Jones homered for Atlanta.")
    other = item(
        "b", unit(1, 0.32, 0), "Athletics 5, Devil Rays 0", "Barry Zito pitched for Oakland."
    )
    assert float(np.dot(seed.vector, other.vector)) > 0.99  # as close as embeddings get
    assert best_story(rule, other, [seed]) is None


def test_a_rewrite_of_one_event_joins_its_seed() -> None:
    rule = StoryRule()
    seed = item(
        "a", unit(1, 0.1, 0), "Capriati to miss Australian Open", "Jennifer Capriati withdrew."
    )
    retold = item(
        "b", unit(1, 0.12, 0), "Capriati out of Australian Open", "Jennifer Capriati pulled out."
    )
    match = best_story(rule, retold, [seed])
    assert match is not None and match.story_id == "a"
    assert match.shared_terms >= 3


def test_only_seeds_are_candidates_so_stories_never_chain() -> None:
    rule = StoryRule()
    member = item("b", unit(1, 0, 0), "Oil tops $50 in New York", story="a")
    newcomer = item("c", unit(1, 0, 0), "Oil tops $50 in New York")
    assert best_story(rule, newcomer, [member]) is None


def test_a_seed_outside_the_event_window_is_not_a_candidate() -> None:
    rule = StoryRule(window_s=2 * DAY)
    seed = item("a", unit(1, 0, 0), "Oil tops $50 in New York", at=0.0)
    later = item("b", unit(1, 0, 0), "Oil tops $50 in New York", at=3 * DAY)
    assert best_story(rule, later, [seed]) is None
    within = item("c", unit(1, 0, 0), "Oil tops $50 in New York", at=1 * DAY)
    assert best_story(rule, within, [seed]) is not None


def test_below_the_strong_bar_a_report_joins_only_within_one_news_cycle() -> None:
    # A follow-up the next day repeats the first report's names and wording (close, not
    # near-identical): it reports a later development, not the same happening again.
    rule = StoryRule()
    title, lead = "Oil tops $50 in New York trading", "Crude rose on Monday in New York."
    seed = item("a", unit(1, 0, 0), title, lead, at=0.0)
    close = unit(1, 0.75, 0)  # cosine 0.8: above the short mid bar, below the strong one
    assert rule.short.mid <= float(np.dot(seed.vector, close)) < rule.short.strong
    same_cycle = item("b", close, title, lead, at=6 * 3600.0)
    assert best_story(rule, same_cycle, [seed]) is not None
    next_day = item("c", close, title, lead, at=1 * DAY)  # within the event window
    assert best_story(rule, next_day, [seed]) is None
    # At the strong bar the whole event window applies.
    retold = item("d", unit(1, 0.05, 0), title, lead, at=1 * DAY)
    assert best_story(rule, retold, [seed]) is not None


def test_the_closest_admitted_seed_wins() -> None:
    rule = StoryRule()
    title, lead = "Capriati out of Australian Open", "Jennifer Capriati withdrew in Melbourne."
    far = item("far", unit(1, 0.3, 0), title, lead)
    near = item("near", unit(1, 0.05, 0), title, lead)
    match = best_story(rule, item("x", unit(1, 0, 0), title, lead), [far, near])
    assert match is not None and match.story_id == "near"


def test_an_article_is_never_its_own_candidate() -> None:
    rule = StoryRule()
    same = item("a", unit(1, 0, 0), "Capriati out of Australian Open")
    assert best_story(rule, same, [same]) is None


def test_plurals_possessives_and_hyphenated_parts_meet() -> None:
    gale = story_terms("Storm warning for the coast as gale-force winds near", "")
    gales = story_terms("Gales expected on the coast's northern end", "")
    assert {"gale", "coast"} <= gale & gales
    assert story_terms("Blair's budget", "") == story_terms("Blair budgets", "")


def test_a_name_that_opens_the_lead_is_a_key_term() -> None:
    terms = story_terms("Software maker to cut jobs", "Brightline Systems will cut 400 jobs.")
    assert {"brightline", "system", "400"} <= terms
    assert "will" not in terms


def test_one_topic_without_a_shared_name_is_not_one_event() -> None:
    rule = StoryRule()
    japan = item(
        "a", unit(1, 0.1, 0), "Strong earthquake hits southern Japan", "It struck Japan on Monday."
    )
    chile = item(
        "b", unit(1, 0.9, 0), "Strong earthquake hits northern Chile", "It struck Chile on Tuesday."
    )
    cosine = float(np.dot(japan.vector, chile.vector))
    assert rule.short.mid <= cosine < rule.short.strong
    assert len(japan.terms & chile.terms) >= 3  # "strong", "earthquake", "hits": topic words
    assert best_story(rule, chile, [japan]) is None
    retold = item(
        "c", unit(1, 0.9, 0), "Strong earthquake hits Japan coast", "Felt in Japan on Monday."
    )
    assert best_story(rule, retold, [japan]) is not None


def test_a_very_close_copy_needs_no_shared_name() -> None:
    rule = StoryRule()
    seed = item("a", unit(1, 0, 0), "Pension strike talks", "Talks with Unison resume.")
    copy = item("b", unit(1, 0.05, 0), "Pension strike talks", "Talks with the PCS resume.")
    assert seed.names and copy.names and not seed.names & copy.names
    assert best_story(rule, copy, [seed]) is not None


def test_names_come_from_inside_sentences_and_not_from_title_case() -> None:
    assert story_names("Quake hits Japan", "Quake hits Japan. Felt in Osaka on Monday.") == {
        "japan",
        "osaka",
        "monday",
    }
    assert (
        story_names("Oil Prices Rise As Opec Cuts Output", "Oil Prices Rise As Opec Cuts Output")
        == frozenset()
    )
    assert story_names("ارتفاع أسعار النفط", "ارتفاع أسعار النفط") is None


def test_a_word_opening_a_sentence_is_a_name_when_the_article_capitalises_it_again() -> None:
    names = story_names(
        "Intel unveils laser breakthrough",
        "Intel unveils laser breakthrough. Intel has made a chip.",
    )
    assert names == {"intel"}
    assert "strong" not in (
        story_names("Strong quake hits Chile", "Strong quake hits Chile. It hit Chile.") or ()
    )


def test_an_article_without_names_relies_on_its_key_terms() -> None:
    rule = StoryRule()
    talks = item("a", unit(1, 0.1, 0), "Talks aim to avert pension strike", "talks go on.")
    stalemate = item("b", unit(1, 0.1, 0), "Stalemate in pension strike talks", "no deal yet.")
    assert talks.names == frozenset() and stalemate.names == frozenset()
    assert best_story(rule, stalemate, [talks]) is not None


def test_a_seed_pool_decides_as_the_rule_does_over_every_seed() -> None:
    # Random articles and seeds (short and long texts, shared terms or not, in and out of both
    # windows): the pool drops only seeds no bar could admit, so every decision is the same.
    rng = np.random.default_rng(3)
    rule = StoryRule()
    titles = ["Oil tops $50 in New York", "Capriati out of Australian Open", "Strike in Paris"]
    base = rng.normal(size=(3, 8))

    def random_item(ident: str) -> StoryFeatures:
        topic = int(rng.integers(3))
        vector = base[topic] + rng.normal(scale=float(rng.choice([0.05, 0.3, 1.0])), size=8)
        words = int(rng.choice([20, 400]))
        at = float(rng.uniform(0, 3 * DAY))
        return item(ident, unit(*vector), titles[topic], "On Monday.", at=at, words=words)

    seeds = [random_item(f"s{n}") for n in range(300)]
    pool = SeedPool(rule, seeds)
    articles = [random_item(f"a{n}") for n in range(300)]
    kept = [len(pool.near(article)) for article in articles]
    assert sum(kept) < len(seeds) * len(articles) / 2, "the pool drops the far seeds"
    joined = 0
    for article in articles:
        expected = best_story(rule, article, seeds)
        assert best_story(rule, article, pool.near(article)) == expected
        joined += expected is not None
    assert joined > 20, "the comparison covers articles that join a story"
