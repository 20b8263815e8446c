"""Training: strategies (BPTT, ...), losses and the :class:`Trainer` loop."""

from spike.train.losses import LOSSES, get_loss, scores
from spike.train.strategy import BPTT, StepResult, Strategy
from spike.train.trainer import CheckpointError, Trainer, load_checkpoint, save_checkpoint, seed_everything

__all__ = ["Trainer", "BPTT", "Strategy", "StepResult", "LOSSES", "get_loss", "scores", "seed_everything",
           "save_checkpoint", "load_checkpoint", "CheckpointError"]
