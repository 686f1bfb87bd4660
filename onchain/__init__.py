"""onchain: watch DeFi lending positions on-chain and flag the ones likely to be liquidated."""

__version__ = "0.1.0"
