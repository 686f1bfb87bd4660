"""Reads that feed the risk module: DEX pools (reference prices, depth), oracle feeds (last
update), recent blocks (confirmation latency). Each returns calls to execute at a pinned block."""
