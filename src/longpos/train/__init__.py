"""Training: configs, schedules, optimiser groups, data sources, the loop, distributed."""

from longpos.train.config import DataConfig, OptimConfig, TrainConfig
from longpos.train.loop import Trainer, train

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "Trainer", "train"]
