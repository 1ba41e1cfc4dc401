"""wal: a Bitcask-style append-only log store with group commit.

It knows nothing of flows; flowactors builds on it.
"""

__all__: list[str] = []
