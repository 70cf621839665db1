"""3-D ViT masked autoencoder on (RGB, alpha) grids, and the voxel-labelling model built on its encoder.

The grid is cut into 4^3 token cubes. A fraction ``mask_ratio`` of the cubes is
hidden; the encoder sees only the visible tokens (as in He et al.'s MAE), and a
light decoder fills in mask tokens and predicts every voxel of every cube.
Positions use fixed 3-D sine-cosine embeddings, so one model accepts any grid
whose sides are multiples of the patch size.

Why a plain 3-D ViT and not the 3-D Swin of NeRF-MAE: at CPU grid sizes
(32^3 -> 512 tokens) global attention is cheap, and a ViT encoder can drop the
75 % masked tokens entirely, which cuts encoder cost by ~4x; Swin's shifted
windows need the dense token grid (mask tokens fed through the encoder).

Example::

    mae = MAE3D(MAE3DConfig())
    pred, mask = mae(rgba)                       # rgba [B, 4, 32, 32, 32]
    loss = masked_reconstruction_loss(pred, patchify(rgba, 4), mask)["loss"]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnifield.config import register_config
from omnifield.errors import OmnifieldError


@register_config("mae3d")
@dataclass
class MAE3DConfig:
    """Sizes of the 3-D ViT MAE. ``occupied_alpha``: voxels whose target alpha exceeds it count for RGB."""

    patch: int = 4
    in_channels: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    decoder_dim: int = 96
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    occupied_alpha: float = 0.01


def token_grid(spatial: tuple[int, ...], patch: int) -> tuple[int, int, int]:
    """Token cubes per axis for a grid of ``spatial`` voxels; :class:`OmnifieldError` if not divisible."""
    if len(spatial) != 3 or any(n % patch for n in spatial):
        raise OmnifieldError(f"grid shape {list(spatial)} must be 3-D with sides divisible by the patch size {patch}")
    return tuple(n // patch for n in spatial)


def patchify(grid: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, X, Y, Z] -> [B, T, p^3 * C]``: token cubes in x-major order, voxels then channels inside."""
    b, c = grid.shape[:2]
    tx, ty, tz = token_grid(tuple(grid.shape[2:]), patch)
    g = grid.reshape(b, c, tx, patch, ty, patch, tz, patch)
    return g.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, tx * ty * tz, patch**3 * c)


def unpatchify(tokens: torch.Tensor, spatial: tuple[int, int, int], patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, T, p^3 * C] -> [B, C, X, Y, Z]``."""
    b = tokens.shape[0]
    tx, ty, tz = token_grid(spatial, patch)
    c = tokens.shape[-1] // patch**3
    g = tokens.reshape(b, tx, ty, tz, patch, patch, patch, c)
    return g.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, *spatial)


def sincos_position_3d(tokens: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed 3-D sine-cosine position embedding ``[T, dim]`` (each axis gets 2*(dim//6) channels, rest 0)."""
    per_axis = dim // 6
    freqs = 1.0 / (10000 ** (torch.arange(per_axis, dtype=torch.float32) / max(per_axis, 1)))
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in tokens], indexing="ij")
    parts = []
    for coord in axes:
        angle = coord.reshape(-1, 1) * freqs
        parts += [torch.sin(angle), torch.cos(angle)]
    emb = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(emb, (0, dim - emb.shape[1]))


def random_token_mask(batch: int, n_tokens: int, ratio: float, generator: torch.Generator | None = None):
    """Hide ``round(ratio * n_tokens)`` random token cubes per sample.

    Returns ``keep [B, K]`` (indices of visible tokens, sorted) and ``mask [B, T]`` (True = hidden).
    """
    if not 0.0 <= ratio < 1.0:
        raise OmnifieldError(f"mask ratio must be in [0, 1), got {ratio}")
    n_keep = n_tokens - int(round(ratio * n_tokens))
    noise = torch.rand(batch, n_tokens, generator=generator)
    keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, n_tokens, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return keep, mask


def masked_reconstruction_loss(
    pred: torch.Tensor,  # [B, T, p^3 * 4] predicted voxels (RGB then alpha per voxel), in [0, 1]
    target: torch.Tensor,  # [B, T, p^3 * 4] patchified target grid
    mask: torch.Tensor,  # [B, T] True where the token cube was hidden
    occupied_alpha: float = 0.01,
) -> dict[str, torch.Tensor]:
    """NeRF-MAE loss on hidden cubes only: RGB MSE over voxels with target alpha > ``occupied_alpha``
    plus alpha MSE over all their voxels. Returns ``{"loss", "rgb", "alpha"}``."""
    b, t, _ = pred.shape
    pred, target = pred.reshape(b, t, -1, 4), target.reshape(b, t, -1, 4)
    hidden = mask[:, :, None].to(pred.dtype)  # [B, T, 1]
    occupied = hidden * (target[..., 3] > occupied_alpha).to(pred.dtype)  # [B, T, V]
    rgb_err = ((pred[..., :3] - target[..., :3]) ** 2).mean(-1)
    rgb = (rgb_err * occupied).sum() / occupied.sum().clamp_min(1.0)
    alpha_err = (pred[..., 3] - target[..., 3]) ** 2
    alpha = (alpha_err * hidden).sum() / (hidden.sum() * alpha_err.shape[-1]).clamp_min(1.0)
    return {"loss": rgb + alpha, "rgb": rgb, "alpha": alpha}


def _transformer(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, int(dim * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


class ViT3DEncoder(nn.Module):
    """``tokens [B, T, p^3 * C]`` (+ token grid shape, optional ``keep [B, K]``) -> features ``[B, K or T, dim]``."""

    def __init__(self, cfg: MAE3DConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.patch**3 * cfg.in_channels, cfg.dim)
        self.blocks = _transformer(cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int, int], keep: torch.Tensor | None = None):
        h = self.embed(tokens) + sincos_position_3d(grid, self.cfg.dim).to(tokens)
        if keep is not None:
            h = torch.gather(h, 1, keep[..., None].expand(-1, -1, h.shape[-1]))
        return self.blocks(h)


class MAE3D(nn.Module):
    """Masked autoencoder: ``forward(rgba [B, 4, X, Y, Z]) -> (pred [B, T, p^3 * 4] in [0, 1], mask [B, T])``."""

    def __init__(self, cfg: MAE3DConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MAE3DConfig()
        self.encoder = ViT3DEncoder(cfg)
        self.to_decoder = nn.Linear(cfg.dim, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(cfg.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = _transformer(cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads, cfg.mlp_ratio)
        self.head = nn.Linear(cfg.decoder_dim, cfg.patch**3 * cfg.in_channels)

    def forward(self, rgba: torch.Tensor, generator: torch.Generator | None = None, mask_ratio: float | None = None):
        grid = token_grid(tuple(rgba.shape[2:]), self.cfg.patch)
        tokens = patchify(rgba, self.cfg.patch)
        b, t, _ = tokens.shape
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        keep, mask = random_token_mask(b, t, ratio, generator)
        visible = self.to_decoder(self.encoder(tokens, grid, keep.to(rgba.device)))
        full = self.mask_token.expand(b, t, -1).clone()
        full.scatter_(1, keep.to(rgba.device)[..., None].expand(-1, -1, full.shape[-1]), visible)
        h = self.decoder(full + sincos_position_3d(grid, self.cfg.decoder_dim).to(full))
        return torch.sigmoid(self.head(h)), mask.to(rgba.device)


class VoxelSegmenter(nn.Module):
    """Voxel labelling on the MAE encoder: ``forward(rgba [B, 4, X, Y, Z]) -> logits [B, n_classes, X, Y, Z]``.

    Each token's feature is expanded to ``head_channels`` per voxel of its cube, joined with the voxel's
    own RGBA, and a per-voxel MLP gives class logits.
    """

    def __init__(self, cfg: MAE3DConfig, n_classes: int, head_channels: int = 16):
        super().__init__()
        self.cfg, self.n_classes, self.head_channels = cfg, n_classes, head_channels
        self.encoder = ViT3DEncoder(cfg)
        self.expand = nn.Linear(cfg.dim, cfg.patch**3 * head_channels)
        self.classify = nn.Sequential(nn.Linear(head_channels + cfg.in_channels, 32), nn.GELU(), nn.Linear(32, n_classes))

    def forward(self, rgba: torch.Tensor) -> torch.Tensor:
        spatial = tuple(rgba.shape[2:])
        grid = token_grid(spatial, self.cfg.patch)
        feats = unpatchify(self.expand(self.encoder(patchify(rgba, self.cfg.patch), grid)), spatial, self.cfg.patch)
        h = torch.cat([feats, rgba], dim=1).movedim(1, -1)
        return self.classify(h).movedim(-1, 1)
