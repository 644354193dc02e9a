"""The producer: feed registry, safe fetcher, parser adapter, poll scheduler, Kafka publisher."""
