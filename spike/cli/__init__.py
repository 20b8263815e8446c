"""Command-line entry points (``spike train|eval|info``)."""
