"""A setting that is no longer read is refused with a message, never silently ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_the_old_story_threshold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSSTREAM_STORY_THRESHOLD", "0.5")
    with pytest.raises(ValidationError, match="NEWSSTREAM_STORY_WINDOW_HOURS"):
        Settings()


def test_the_story_window_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSSTREAM_STORY_WINDOW_HOURS", "12")
    assert Settings().story_window_hours == 12
