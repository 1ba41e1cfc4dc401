"""flowactors: a durable workflow engine for Trio programs."""

__all__: list[str] = []
