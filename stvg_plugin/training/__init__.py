"""Training the model core: the Uni-STG task mix, an accelerate trainer, checkpoints and baselines."""

from stvg_plugin.training.run import build_model, fit, prepare
from stvg_plugin.training.trainer import NonFiniteLossError, Trainer, TrainerConfig

__all__ = ["NonFiniteLossError", "Trainer", "TrainerConfig", "build_model", "fit", "prepare"]
