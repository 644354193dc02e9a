"""`up`'s live status line: the last state is always shown, and a final one at stop."""

from __future__ import annotations

import io

from newsstream.stack.up import StatusLine


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counts:
    """A status source whose text the test sets between calls."""

    def __init__(self) -> None:
        self.consumed = 0

    def __call__(self) -> str:
        return f"consumed {self.consumed}"


def _plain(counts: Counts, clock: FakeClock) -> tuple[StatusLine, io.StringIO]:
    out = io.StringIO()
    return StatusLine(counts, tty=False, every_s=5.0, clock=clock, out=out), out


def test_a_state_reached_between_two_prints_is_printed_once_it_holds_still() -> None:
    """The supervisor calls every 2 s: 7,552 arrives 2 s after a print, 7,600 2 s later, then
    nothing changes; the log must still end with 7,600."""
    counts, clock = Counts(), FakeClock()
    status, out = _plain(counts, clock)
    for at, consumed in ((0, 7000), (2, 7552), (4, 7600), (6, 7600), (8, 7600), (10, 7600)):
        clock.now, counts.consumed = float(at), consumed
        status()
    lines = out.getvalue().splitlines()
    assert lines[-1] == "status: consumed 7600"
    assert lines == ["status: consumed 7000", "status: consumed 7600"]


def test_a_log_gets_at_most_one_line_per_interval_and_none_while_nothing_changes() -> None:
    counts, clock = Counts(), FakeClock()
    status, out = _plain(counts, clock)
    for tick in range(20):  # 40 s, a change on every call
        clock.now, counts.consumed = 2.0 * tick, tick
        status()
    assert len(out.getvalue().splitlines()) == 7  # at 0, 6, 12, ... 36 s
    before = out.getvalue()
    for tick in range(20, 40):  # 40 s more, nothing changes after the catch-up line
        clock.now = 2.0 * tick
        status()
    assert out.getvalue().splitlines()[len(before.splitlines()) :] == ["status: consumed 19"]


def test_stop_prints_the_final_state_even_right_after_a_print() -> None:
    counts, clock = Counts(), FakeClock()
    status, out = _plain(counts, clock)
    counts.consumed = 10
    status()
    clock.now, counts.consumed = 1.0, 12
    status()  # throttled
    status.final()
    assert out.getvalue().splitlines() == ["status: consumed 10", "final status: consumed 12"]


def test_on_a_terminal_every_call_redraws_and_stop_ends_the_line() -> None:
    counts, clock = Counts(), FakeClock()
    out = io.StringIO()
    status = StatusLine(counts, tty=True, clock=clock, out=out)
    counts.consumed = 1000
    status()
    counts.consumed = 7
    status()
    status.final()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0] == "consumed 1000"
    assert frames[1] == "consumed 7   "  # padded over the longer line before
    assert frames[2] == "final: consumed 7\n"
