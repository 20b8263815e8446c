"""Datasets and loaders (tonic adapters, in-memory binned datasets, time-first collation)."""
