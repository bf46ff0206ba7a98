"""Encryption at rest: the sealed-block blob format (blocks.py) and key management (keys.py)."""
