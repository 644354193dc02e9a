"""What every newsstream service shares: settings, the Article contract, id rules, the Kafka
client factory, metrics, errors, and the records of the topics several services read (status,
search events, the ledger)."""
