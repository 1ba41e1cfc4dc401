"""The declarative SDK (seeds 000/001): `Workflow`, `Client`, `Worker` and handler
outcomes, turning handlers into explicit, fenced engine commands (nothing is replayed).
"""
