"""What every newsstream service shares: settings, the Article contract, id rules, clients, metrics."""
