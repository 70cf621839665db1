"""Compact 3D Gaussians (Lee et al., CVPR 2024) as options on top of :class:`GaussianScene`.

- Learnable volume masks: ``m = sigmoid(mask_logit)``, hard ``M = [m > 0.01]`` with a straight-through
  estimator ``M + m - sg(m)``, multiplied into scale and opacity; loss ``lambda_m * mean(m)``;
  masked Gaussians are pruned by density control.
- Colour from a hash grid over the scene box plus a small MLP fed with the SH-encoded view direction,
  instead of per-Gaussian SH. As in the paper's code, the MLP output is a degree-0 SH coefficient,
  ``rgb = max(0, 0.5 + C0 MLP([hash(sg(mu)), SH_3(d)]))``, and the grid is read at the detached means:
  colour gradients train the grid and the MLP but do not move the Gaussians (a hash grid's gradient
  with respect to position is high-frequency noise for the geometry, and it would inflate the
  screen-space gradients that drive densification).
- Residual VQ (6 stages x 64 codes) of log-scales and rotations once ``enable_rvq`` is called.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnifield.config import register_config
from omnifield.fields.gaussians import SH_C0, GaussianScene
from omnifield.fields.hashgrid import HashGridConfig
from omnifield.fields.mlp import MLPConfig
from omnifield.fields.rvq import ResidualVQ
from omnifield.fields.sh import spherical_harmonics


@register_config("compact_3dgs")
@dataclass
class CompactConfig:
    """Compact-3DGS options. The paper's NeRF-synthetic mask weight (4e-3; 5e-4 for real scenes); its table
    is 2^16 there (2^19 for real scenes), 2^15 here: the table is stored whole, so with the ~50k Gaussians
    of a CPU-sized scene a 2^16 table would be most of the file."""

    mask_lambda: float = 4e-3
    mask_threshold: float = 0.01
    hash_levels: int = 16
    hash_log2_size: int = 15
    hash_max_resolution: int = 512
    mlp_width: int = 64
    mlp_hidden_layers: int = 2
    view_sh_degree: int = 3
    rvq_stages: int = 6
    rvq_codes: int = 64


class CompactGaussianScene(GaussianScene):
    """Gaussians with volume masks, a hash-grid colour field and optional RVQ of scale and rotation."""

    colors_are_sh = False
    color_output = "sh0"  # how MLP outputs become colours; files and runs record it (older ones: sigmoid)

    def __init__(self, means, log_scales, quats, opacity_logits, aabb: torch.Tensor, cfg: CompactConfig | None = None,
                 mask_logits: torch.Tensor | None = None):
        n = means.shape[0]
        super().__init__(means, log_scales, quats, opacity_logits, torch.zeros(n, 1, 3))
        del self.sh_dc, self.sh_rest  # colour comes from the field below
        self.cfg = cfg or CompactConfig()
        self.register_buffer("aabb", aabb.detach().float().clone())  # [6]: lo, hi
        self.mask_logits = nn.Parameter(torch.ones(n) if mask_logits is None else mask_logits.detach().float().clone())
        grid = HashGridConfig(
            n_levels=self.cfg.hash_levels, log2_hashmap_size=self.cfg.hash_log2_size,
            max_resolution=self.cfg.hash_max_resolution,
        )  # fmt: skip
        self.color_grid = grid.build(3)
        n_view = (self.cfg.view_sh_degree + 1) ** 2
        self.color_mlp = MLPConfig(width=self.cfg.mlp_width, n_hidden_layers=self.cfg.mlp_hidden_layers).build(
            self.color_grid.n_output_dims + n_view, 3
        )
        self.scale_vq = ResidualVQ(3, self.cfg.rvq_stages, self.cfg.rvq_codes)
        self.rotation_vq = ResidualVQ(4, self.cfg.rvq_stages, self.cfg.rvq_codes)
        self.use_rvq = False

    @classmethod
    def from_scene(cls, scene: GaussianScene, aabb: torch.Tensor, cfg: CompactConfig | None = None) -> "CompactGaussianScene":
        """Compact version of an initial scene (its SH colour is dropped)."""
        return cls(scene.means, scene.log_scales, scene.quats, scene.opacity_logits, aabb, cfg)

    def gaussian_parameter_names(self) -> list[str]:
        return ["means", "log_scales", "quats", "opacity_logits", "mask_logits"]

    # -- masks ----------------------------------------------------------------------------------
    def mask(self) -> torch.Tensor:
        """Straight-through binary mask ``[N]`` (value 0/1, gradient of the sigmoid)."""
        soft = torch.sigmoid(self.mask_logits)
        hard = (soft > self.cfg.mask_threshold).to(soft.dtype)
        return hard + soft - soft.detach()

    def mask_loss(self) -> torch.Tensor:
        """``lambda_m * mean(sigmoid(mask_logits))``."""
        return self.cfg.mask_lambda * torch.sigmoid(self.mask_logits).mean()

    def prune_mask(self) -> torch.Tensor:
        """Gaussians switched off by their mask ``[N] bool``."""
        return torch.sigmoid(self.mask_logits.detach()) <= self.cfg.mask_threshold

    # -- quantized attributes -------------------------------------------------------------------
    def enable_rvq(self) -> None:
        """Fit the codebooks to the current scales/rotations and quantize them from now on."""
        self.scale_vq.fit(self.log_scales.detach())
        self.rotation_vq.fit(F.normalize(self.quats.detach(), dim=-1))
        self.use_rvq = True

    def _kept_in_eval(self, name: str, compute):
        """``compute()``; in eval mode without gradients, kept until the scene changes (RVQ lookups and the
        colour grid then run once, not at every rendered view)."""
        return compute() if self.training or torch.is_grad_enabled() else self.frozen(name, compute)

    def scales(self) -> torch.Tensor:
        def compute():
            log_scales = self.scale_vq(self.log_scales) if self.use_rvq else self.log_scales
            return torch.exp(log_scales) * self.mask()[:, None]

        return self._kept_in_eval("scales", compute)

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits) * self.mask()

    def rotations(self) -> torch.Tensor:
        def compute():
            quats = F.normalize(self.quats, dim=-1)
            return self.rotation_vq(quats) if self.use_rvq else quats

        return self._kept_in_eval("rotations", compute)

    # -- colour field ---------------------------------------------------------------------------
    def color_parameters(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hash-grid features ``[N, F]`` at the Gaussians' means (rows ``index [M]`` only, when given)."""
        lo, hi = self.aabb[:3], self.aabb[3:]

        def features(means: torch.Tensor) -> torch.Tensor:
            return self.color_grid(((means.detach() - lo) / (hi - lo)).clamp(0.0, 1.0))

        if index is not None and (self.training or torch.is_grad_enabled()):
            return features(self.means[index])  # only the rows asked for
        feats = self._kept_in_eval("features", lambda: features(self.means))
        return feats if index is None else feats[index]

    def decode_colors(self, feats: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """``max(0, 0.5 + C0 MLP([feats [P, F], SH(dirs [P, 3])]))`` -> ``[P, 3]``."""
        unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        view = spherical_harmonics(unit, self.cfg.view_sh_degree + 1)
        return (SH_C0 * self.color_mlp(torch.cat([feats, view], dim=-1)) + 0.5).clamp_min(0.0)

    def colors_for_directions(self, dirs: torch.Tensor) -> torch.Tensor:
        """Colour of every Gaussian seen along each query direction: ``dirs [B, 3] -> [B, N, 3]``."""
        feats = self.color_parameters()  # [N, F]
        b, n = len(dirs), len(feats)
        return self.decode_colors(feats[None].expand(b, n, -1), dirs[:, None, :].expand(b, n, 3))

    @property
    def sh(self) -> torch.Tensor:
        """Per-Gaussian SH (degree 3) fitted by least squares to the colour field over 64 directions."""
        return self.baked_sh(3)

    def base_colors(self) -> torch.Tensor:
        """Colour ``[N, 3]`` of each Gaussian averaged over view directions (the colour field's degree-0 band)."""
        return (self.baked_sh(0)[:, 0] * SH_C0 + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def baked_sh(self, degree: int) -> torch.Tensor:
        """SH coefficients ``[N, (degree+1)^2, 3]`` reproducing the colour field (for .ply export)."""
        golden = torch.pi * (3.0 - 5.0**0.5)
        i = torch.arange(64, dtype=torch.float32) + 0.5
        z = 1 - 2 * i / 64
        r = (1 - z * z).sqrt()
        dirs = torch.stack([r * torch.cos(golden * i), r * torch.sin(golden * i), z], dim=-1).to(self.means.device)
        basis = spherical_harmonics(dirs, degree + 1)  # [64, K]
        colors = self.colors_for_directions(dirs) - 0.5  # [64, N, 3]
        coeffs = torch.linalg.lstsq(basis, colors.reshape(64, -1)).solution  # [K, N*3]
        return coeffs.reshape(len(basis[0]), len(self), 3).permute(1, 0, 2).contiguous()

    def to_plain_scene(self) -> GaussianScene:
        """A standard :class:`GaussianScene` (masked, quantized, colour baked into SH degree 3)."""
        with torch.no_grad():
            keep = ~self.prune_mask()
            log_scales = torch.log(self.scales()[keep].clamp_min(1e-12))
            opac = self.opacities()[keep].clamp(1e-6, 1 - 1e-6)
            return GaussianScene(self.means[keep], log_scales, self.rotations()[keep], torch.logit(opac),
                                 self.baked_sh(3)[keep])
