"""Training: strategies (BPTT, SLTT/SLTT-K, Forward-Forward, Mono-Forward), losses and the :class:`Trainer` loop."""

from spike.train.forward_forward import ForwardForward, MonoForward
from spike.train.losses import LOSSES, get_loss, scores
from spike.train.sltt import SLTT, SLTTError
from spike.train.strategy import BPTT, StepResult, Strategy
from spike.train.trainer import CheckpointError, Trainer, load_checkpoint, save_checkpoint, seed_everything

__all__ = ["Trainer", "BPTT", "SLTT", "SLTTError", "ForwardForward", "MonoForward", "Strategy", "StepResult", "LOSSES", "get_loss", "scores", "seed_everything",
           "save_checkpoint", "load_checkpoint", "CheckpointError"]
