"""`onchain serve`: the JSON API, the dashboard and the Prometheus metrics over the stored
snapshots (read-only; see onchain/api/app.py)."""
