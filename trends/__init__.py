"""The search-trends service: a faust-streaming app that folds search events into windowed
counts (top and rising queries, top stories) and publishes them as status snapshots.

:mod:`trends.windows` holds the counting (pure, bounded, no Kafka); :mod:`trends.app` the faust
app that feeds it and publishes snapshots. Dependency rule: this package imports only ``core``
(the search-event contract :mod:`core.search_events`, the status topic :mod:`core.status`);
producers, consumers and search_api never import it, nor it them. The API meets it through
Kafka: it emits search events and reads the snapshots back from the status topic. Only
``newsstream`` composes it (``newsstream trends``).
"""
