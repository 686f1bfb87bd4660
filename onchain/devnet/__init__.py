"""A local anvil chain with the real protocol contracts deployed and borrowers seeded."""
