"""How much of a held-out view the training views saw: a diagnostic for sparse captures.

A held-out pixel can only be right if its surface was photographed. Where every training view missed it
(or saw it only once, so its depth is unknown), the best a reconstruction can do there is a guess, and the
view's PSNR is bounded by that share of its pixels. :class:`Coverage` counts, for each pixel of a view,
the training views that see the point where the run's rays stop there: inside their image (pinhole; lens
distortion ignored) and not behind a nearer surface of that view's own depth map. ``omnifield eval
--coverage K`` then scores each view separately on the pixels at least K training views saw and on the rest.

The geometry is the run's own: where it put a surface wrongly (a floater, fog in an unseen corner), the
count is of that surface. Unseen corners tend to come out as fog, which the training views do not see
either, so the count errs towards "uncovered" there.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from omnifield.apps.recon.run import Run
from omnifield.data.scene import project_into_views
from omnifield.metrics import psnr
from omnifield.renderers.cameras import Cameras

OCCLUSION_TOLERANCE = 0.05  # a point is hidden from a view when that view's own surface is > 5 % nearer


class Coverage:
    """The training views' stopping distances of ``run`` (``[V, H, W]``, rendered once), to count per pixel of
    another view how many of them see its surface; a pixel is covered when at least ``min_views`` do.
    ``render(cameras, index)`` is the run's renderer on a background; ``cameras`` the training views as
    trained (refined poses, where the run refines them)."""

    def __init__(self, run: Run, cameras: Cameras, render, min_views: int, progress: bool = True):
        self.run, self.cameras, self.min_views = run, cameras, min_views
        maps = []
        for j in tqdm(range(len(cameras)), desc="training views' depth", disable=not progress, leave=False):
            points, origins = self._stopping_points(cameras, j, render(cameras, j))
            maps.append((points - origins).norm(dim=-1).reshape(cameras.height, cameras.width))
        self.distances = torch.stack(maps)

    def _stopping_points(self, cameras: Cameras, index: int, out: dict) -> tuple[torch.Tensor, torch.Tensor]:
        origins, directions = cameras.image_rays(index)
        points = self.run.renderer.stopping_points(origins, directions, out["depth"].reshape(-1).to(origins),
                                                   out["alpha"].reshape(-1).to(origins))
        return points, origins

    def count(self, cameras: Cameras, index: int, out: dict) -> torch.Tensor:
        """``[H, W]``: for each pixel of view ``index`` of ``cameras``, rendered as ``out`` (``depth``, ``alpha``),
        the number of training views that see the point where its ray stops."""
        points, _ = self._stopping_points(cameras, index, out)
        train = self.cameras
        seen_by = torch.zeros(len(points))
        for j in range(len(train)):
            u, v, _, inside = project_into_views(train, torch.full((len(points),), j), points)
            distance = (points - train.c2w[j, :3, 3]).norm(dim=-1)
            row, column = v.long().clamp(0, train.height - 1), u.long().clamp(0, train.width - 1)
            nearest = self.distances[j][row, column]
            seen_by += (inside & (distance <= nearest * (1.0 + OCCLUSION_TOLERANCE))).float()
        return seen_by.reshape(cameras.height, cameras.width)


def covered_scores(pred: torch.Tensor, gt: torch.Tensor, seen_by: torch.Tensor, min_views: int) -> dict:
    """PSNR of ``pred [H, W, 3]`` against ``gt`` on the pixels at least ``min_views`` training views saw
    (``seen_by [H, W]``) and on the rest (None where there are none), and the covered share of pixels."""
    covered = seen_by >= min_views

    def score(mask: torch.Tensor) -> float | None:
        return psnr(pred[mask], gt[mask]) if bool(mask.any()) else None

    return {"covered": float(covered.float().mean()), "psnr_covered": score(covered), "psnr_uncovered": score(~covered)}


def coverage_picture(pred: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """``pred [H, W, 3]`` with its uncovered pixels (``covered [H, W]`` False) tinted red, for a person to see
    which parts of a held-out view no (or too few) training views photographed."""
    red = torch.tensor([1.0, 0.0, 0.0])
    return torch.where(covered[..., None], pred, 0.5 * pred + 0.5 * red)
