"""Alerts that reach people: rules with hysteresis (rules.py), messages (messages.py), an
outbox written with the snapshot (outbox.py), channels (channels.py) and the delivery job
(delivery.py). `[alerts]` is parsed by config.py."""
