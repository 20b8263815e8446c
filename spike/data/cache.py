"""A cache of binned tensors keyed by dataset, split and every transform parameter.

The key is the SHA-256 of the canonical JSON of all parameters (plus a format version), so changing
any parameter gives a different entry and stale data is never returned. Entries are written to a
temporary file and renamed into place: an interrupted write leaves no partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["cache_key", "load_or_build", "CACHE_VERSION"]

CACHE_VERSION = 1


def cache_key(**params) -> str:
    """Stable hex key of ``params`` (JSON-serialisable values; tuples become lists)."""
    blob = json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_or_build(cache_dir: str | Path | None, params: dict, build: Callable[[], dict[str, np.ndarray]],
                  ) -> dict[str, np.ndarray]:
    """Return the arrays cached under ``params`` or build, store (atomically) and return them.

    Args:
        cache_dir: folder for entries; ``None`` disables caching.
        params: everything the arrays depend on (dataset, split, transform parameters, ...).
        build: computes the arrays when there is no entry.
    """
    if cache_dir is None:
        return build()
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{params.get('dataset', 'data')}-{params.get('split', 'all')}-{cache_key(**params)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    arrays = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        (path.with_suffix(".json")).write_text(json.dumps(params, sort_keys=True, indent=1, default=str))
    finally:
        if tmp.exists():
            tmp.unlink()
    return arrays
