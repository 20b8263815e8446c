"""A tiny in-memory dataset for training tests: ``[data] name = "tiny"``, 3 classes whose pixel rate
grows with the label, so a few epochs separate them."""

import pytest
import torch

from spike.data import builders
from spike.data.builders import DataBundle, FramesDataset


def tiny_builder(side: int = 4, n_train: int = 16, n_test: int = 8):
    """A ``DATASETS`` builder: ``n_train + n_test`` samples ``[T, 2, side, side]``, labels ``i % 3``."""
    def build(cfg, seed: int) -> DataBundle:
        n = n_train + n_test
        g = torch.Generator().manual_seed(0)
        y = torch.arange(n) % 3
        x = (torch.rand(n, cfg.n_time_bins, 2, side, side, generator=g) < 0.1 + 0.2 * y.view(-1, 1, 1, 1, 1)).float()
        return DataBundle(FramesDataset(x[:n_train], y[:n_train]), FramesDataset(x[n_train:], y[n_train:]),
                          input_shape=(2, side, side), n_classes=3, n_time_bins=cfg.n_time_bins, name="tiny")
    return build


@pytest.fixture
def register_tiny(monkeypatch):
    """``register_tiny(side=4, n_train=16, n_test=8)`` makes ``[data] name = "tiny"`` that data set."""
    def register(side: int = 4, n_train: int = 16, n_test: int = 8) -> None:
        monkeypatch.setitem(builders.DATASETS, "tiny", tiny_builder(side, n_train, n_test))
    return register
