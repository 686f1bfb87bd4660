"""Morpho Blue: exact math (`math`) and the adapter that plans reads and decodes positions."""
