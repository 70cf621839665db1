"""Depths of sparse structure-from-motion points where the views that found them see them.

A point triangulated from several photos is a measurement of the surface along each of its tracks' rays:
its depth in view ``v`` is what a renderer should see at its pixel there. Depth-supervised NeRF (Deng et
al. 2022) and gsplat's ``depth_loss`` train on exactly these depths; :func:`omnifield.losses.depth.sparse_depth_loss`
is the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnifield.data.scene import ScenePoints, project_into_views
from omnifield.data.triangulate import triangulate_views
from omnifield.errors import OmnifieldError
from omnifield.renderers.cameras import Cameras


@dataclass
class SparseDepth:
    """Per-view depth samples, packed: view ``v`` owns rows ``offsets[v]:offsets[v + 1]`` of ``uv [M, 2]``
    (pixel coordinates, x right, y down, ``0.5`` = centre of the first pixel) and ``depth [M]`` (z-depth
    along the camera's optical axis, in the cameras' units). ``offsets`` is ``[V + 1]``."""

    offsets: torch.Tensor
    uv: torch.Tensor
    depth: torch.Tensor

    def __len__(self) -> int:
        return len(self.depth)

    def view(self, v: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``uv [m, 2]`` and ``depth [m]`` of view ``v``."""
        start, stop = int(self.offsets[v]), int(self.offsets[v + 1])
        return self.uv[start:stop], self.depth[start:stop]

    def to(self, device: torch.device | str) -> "SparseDepth":
        return SparseDepth(self.offsets, self.uv.to(device), self.depth.to(device))

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The samples as named tensors (for a checkpoint); :meth:`from_tensors` reads them back."""
        return {f"{prefix}offsets": self.offsets, f"{prefix}uv": self.uv.cpu(), f"{prefix}depth": self.depth.cpu()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "SparseDepth":
        return cls(tensors[f"{prefix}offsets"].long(), tensors[f"{prefix}uv"], tensors[f"{prefix}depth"])

    @classmethod
    def from_tracks(cls, points: ScenePoints, cameras: Cameras) -> "SparseDepth":
        """Project each point of ``points`` (with ``tracks``, view indices into ``cameras``) into the views
        that saw it; observations behind a camera or outside its image are dropped."""
        if points.tracks is None:
            raise OmnifieldError("sparse depths need points with tracks (which view saw which point)")
        point, view = points.tracks[:, 0].long(), points.tracks[:, 1].long()
        if len(view) and (int(view.max()) >= len(cameras) or int(view.min()) < 0):
            raise OmnifieldError(f"point tracks name view {int(view.max())}, but there are {len(cameras)} views")
        u, v, depth, seen = project_into_views(cameras, view, points.xyz[point])
        view, order = view[seen], torch.argsort(view[seen], stable=True)
        offsets = torch.zeros(len(cameras) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.bincount(view, minlength=len(cameras)), 0)
        uv = torch.stack([u, v], dim=-1)[seen][order].float()
        return cls(offsets, uv, depth[seen][order].float())


def training_depths(images: torch.Tensor, cameras: Cameras, points: ScenePoints | None, triangulate: bool,
                    required: bool, option: str) -> SparseDepth | None:
    """Depth samples of the training views ``images [V, H, W, C]`` seen through ``cameras``: the tracks of
    ``points`` where they have them (a COLMAP model's), else points triangulated from the photos for the
    purpose (unless ``triangulate`` is False: the caller tried already). Where too few points are found: an
    error naming ``option`` when ``required`` (the user asked for the loss), else a note and None."""
    try:
        if points is None or points.tracks is None:
            if not triangulate:
                raise OmnifieldError("the training photos gave too few triangulated points")
            points = triangulate_views(images, cameras)
    except OmnifieldError as exc:
        if required:
            raise OmnifieldError(f"{option}: {exc}") from None
        print(f"note: {exc}; training without the sparse depth loss")
        return None
    return SparseDepth.from_tracks(points, cameras)
