"""Settings that every pycolmap pipeline here shares (``omnifield process`` and triangulation of posed photos)."""

from __future__ import annotations

UPSAMPLE_BELOW_PX = 1000


def silence_colmap_logging() -> None:
    """Hide COLMAP's own log lines (fatal ones aside): stages report progress, failures become one clear error."""
    import pycolmap

    pycolmap.logging.minloglevel = 3


def sift_first_octave(long_side: int) -> int:
    """SIFT's first octave for images whose long side (as extracted) is ``long_side`` px: -1 (detect on a 2x
    upsampled image, COLMAP's default) under 1000 px, where small features matter; 0 above it, where
    upsampling costs ~4x the time for features that matching at this size does not need."""
    return -1 if long_side < UPSAMPLE_BELOW_PX else 0
