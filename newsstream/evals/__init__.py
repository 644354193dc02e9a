"""Quality evaluations of ``newsstream eval``: dedup and the quality gate, search retrieval, and
the story rule (with its judged pairs, ``story_judgements.csv``), against the shared data.
"""
