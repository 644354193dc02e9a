"""Three short news texts about unrelated events, for tests that index a few articles and need
each one to be found by its own words and never by another's."""

from __future__ import annotations

FLOODS = (
    "Floodwaters swept through three villages in the northern province on Tuesday after days "
    "of torrential rain, forcing thousands of residents to leave their homes, officials said."
)
RATES = (
    "The central bank kept its main interest rate unchanged on Thursday, saying inflation was "
    "easing more slowly than expected and that borrowing costs would stay high for some time."
)
CHESS = (
    "A teenage grandmaster won the national chess championship on Sunday with a quiet endgame "
    "that left older rivals searching for answers after eleven rounds of play in the capital."
)
