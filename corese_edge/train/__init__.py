"""Training: the trainer, SWA, distributed setup, metrics and plots (needs the [train] extra)."""
from corese_edge.train.config import TrainConfig
from corese_edge.train.trainer import TrainResult, TrainingDiverged, train

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train"]
