"""Fast implementations registered in :mod:`spike.core.registry`; imported lazily, never from here."""
