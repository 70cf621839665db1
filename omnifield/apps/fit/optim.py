"""Optimiser shared by the fitting programs: grids/bases at a high learning rate, MLP weights lower."""

from __future__ import annotations

import torch


def grid_and_mlp_parameters(field: torch.nn.Module) -> tuple[list, list]:
    """Split ``field``'s parameters: the encoding's and CAM's modulation ``grids`` vs. the decoder MLP's."""
    grid = [p for n, p in field.named_parameters() if n.startswith("encoding.") or n.endswith(".grids")]
    ids = {id(p) for p in grid}
    mlp = [p for p in field.parameters() if id(p) not in ids]
    return grid, mlp


def make_optimizer(field: torch.nn.Module, lr_grid: float, lr_mlp: float) -> torch.optim.Adam:
    """Adam with two groups (Instant-NGP's eps); empty groups are left out."""
    grid, mlp = grid_and_mlp_parameters(field)
    groups = [g for g in ({"params": grid, "lr": lr_grid}, {"params": mlp, "lr": lr_mlp}) if g["params"]]
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
