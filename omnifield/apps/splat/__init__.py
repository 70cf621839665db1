"""Gaussian-splatting reconstruction: training with density control, Compact-3DGS, compression, export."""

from omnifield.apps.splat.train import add_splat_arguments, evaluate_splat, train_splat

__all__ = ["add_splat_arguments", "evaluate_splat", "train_splat"]
