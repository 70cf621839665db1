"""Gaussian-splatting reconstruction: training with density control, Compact-3DGS, compression, export."""

from omnifield.apps.splat.cli import add_splat_arguments, splat_configs
from omnifield.apps.splat.config import SplatTrainConfig
from omnifield.apps.splat.train import SplatTask, evaluate_splat, train_splat

__all__ = ["SplatTask", "SplatTrainConfig", "add_splat_arguments", "evaluate_splat", "splat_configs", "train_splat"]
