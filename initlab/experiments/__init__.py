"""Experiments: each is a config dataclass, a ``validate``, a ``run`` and a report over its result folder."""
