"""The feed registry on the feeds topic, against the local broker: `newsstream feeds`
add/update/remove/import write it, and a producer's start publishes its local feeds only when
the topic never held them (the packaged defaults only into an empty registry)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.settings import Settings
from newsstream.cli.app import app
from producers.feed_topic import decode_spec, read_feed_keys, seed_feeds
from producers.feeds import FeedSpec, feed_id, load_feeds
from producers.registry import FeedOrigin, ResolvedFeed, to_opml

pytestmark = pytest.mark.integration

URL = "https://wire.example/rss"


@pytest.fixture
def settings(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=f"{unique_name}.articles",
        kafka_partitions=3,
        data_dir=tmp_path / "data",
    )


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "NEWSSTREAM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "NEWSSTREAM_KAFKA_TOPIC": settings.kafka_topic,
        "NEWSSTREAM_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "NEWSSTREAM_DATA_DIR": str(settings.data_dir),
    }


def shared(settings: Settings) -> dict[str, FeedSpec | None]:
    """The feeds topic's latest value per feed id (None: removed)."""
    return {
        key: None if value is None else decode_spec(value)
        for key, value in read_feed_keys(settings).items()
    }


def test_feeds_commands_write_the_shared_registry(settings: Settings, tmp_path: Path) -> None:
    runner, env = CliRunner(), env_of(settings)
    added = runner.invoke(app, ["feeds", "add", URL, "--name", "Wire", "--tags", "a"], env=env)
    assert added.exit_code == 0, added.output
    assert shared(settings)[feed_id(URL)] == FeedSpec(URL, "Wire", ("a",))
    updated = runner.invoke(app, ["feeds", "update", URL, "--retention-days", "7"], env=env)
    assert updated.exit_code == 0, updated.output
    assert shared(settings)[feed_id(URL)] == FeedSpec(URL, "Wire", ("a",), 7)
    removed = runner.invoke(app, ["feeds", "remove", URL], env=env)
    assert removed.exit_code == 0, removed.output
    assert shared(settings)[feed_id(URL)] is None
    opml = tmp_path / "feeds.opml"
    feeds = [FeedSpec(f"https://n{n}.example/rss", f"N{n}") for n in range(5)]
    opml.write_text(to_opml(feeds), encoding="utf-8")
    imported = runner.invoke(app, ["feeds", "import", str(opml)], env=env)
    assert imported.exit_code == 0, imported.output
    held = shared(settings)
    assert all(held[spec.id] == spec for spec in feeds)


def test_a_feed_published_from_elsewhere_is_removed_from_the_shared_registry(
    settings: Settings,
) -> None:
    other = FeedSpec("https://elsewhere.example/rss", "From a feeds file")
    assert seed_feeds(settings, [ResolvedFeed(other, FeedOrigin.FILE)]) == 1
    removed = CliRunner().invoke(app, ["feeds", "remove", other.url], env=env_of(settings))
    assert removed.exit_code == 0, removed.output
    assert shared(settings)[other.id] is None
    # A producer whose feeds file still lists it starts: the removal wins.
    assert seed_feeds(settings, [ResolvedFeed(other, FeedOrigin.FILE)]) == 0
    assert shared(settings)[other.id] is None


def test_start_publishes_only_what_the_registry_never_held(settings: Settings) -> None:
    defaults = [ResolvedFeed(spec, FeedOrigin.DEFAULT) for spec in load_feeds(None)]
    assert seed_feeds(settings, defaults) == len(defaults)
    assert seed_feeds(settings, defaults) == 0, "a second start publishes nothing"
    dropped = defaults[0].spec
    removed = CliRunner().invoke(app, ["feeds", "remove", dropped.url], env=env_of(settings))
    assert removed.exit_code == 0, removed.output
    assert shared(settings)[dropped.id] is None
    assert seed_feeds(settings, defaults) == 0, "a removed feed stays removed"
    assert shared(settings)[dropped.id] is None
    mine = ResolvedFeed(FeedSpec(URL, "Wire"), FeedOrigin.REGISTRY)
    assert seed_feeds(settings, [*defaults, mine]) == 1


def test_the_defaults_do_not_join_a_registry_that_has_feeds(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, kafka_topic=f"{unique_name}-2.articles", data_dir=tmp_path
    )
    mine = ResolvedFeed(FeedSpec(URL, "Wire"), FeedOrigin.REGISTRY)
    assert seed_feeds(settings, [mine]) == 1
    defaults = [ResolvedFeed(spec, FeedOrigin.DEFAULT) for spec in load_feeds(None)]
    assert seed_feeds(settings, defaults) == 0
    assert set(shared(settings)) == {mine.spec.id}
