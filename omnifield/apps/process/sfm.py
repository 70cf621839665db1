"""Structure from motion with pycolmap: SIFT features, matching, incremental mapping, undistortion to PINHOLE.

All images share one camera (``CameraMode.SINGLE``). Exhaustive matching tries every pair; sequential
matching pairs each image with its next ``overlap`` neighbours by name (video frames, long walks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omnifield.data.pycolmap_settings import sift_first_octave
from omnifield.errors import OmnifieldError

CAMERA_MODELS = ("OPENCV", "SIMPLE_RADIAL")
MATCHERS = ("auto", "exhaustive", "sequential")
EXHAUSTIVE_MAX_IMAGES = 100


@dataclass
class SfmOptions:
    """Choices of the pipeline; ``matcher="auto"`` is exhaustive up to 100 images, sequential beyond or for video."""

    camera_model: str = "OPENCV"
    max_image_size: int = 1600
    matcher: str = "auto"
    sequential_overlap: int = 10


def resolve_matcher(matcher: str, n_images: int, is_video: bool) -> str:
    """``"exhaustive"`` or ``"sequential"`` for ``n_images`` images (``is_video``: ordered frames)."""
    if matcher != "auto":
        return matcher
    return "sequential" if is_video or n_images > EXHAUSTIVE_MAX_IMAGES else "exhaustive"


def first_octave(image: Path, max_image_size: int) -> int:
    """SIFT's first octave for ``image`` once resized to at most ``max_image_size`` px (:func:`sift_first_octave`)."""
    import imageio.v3 as iio

    return sift_first_octave(min(max(iio.improps(image).shape[:2]), max_image_size))


def extract(database: Path, image_dir: Path, names: list[str], options: SfmOptions) -> None:
    """SIFT features of ``names`` (images resized to at most ``max_image_size`` px) into ``database``."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = options.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.sift.first_octave = first_octave(image_dir / names[0], options.max_image_size)
    pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)


def match(database: Path, matcher: str, options: SfmOptions) -> None:
    """Match and geometrically verify image pairs in ``database`` (``"exhaustive"`` or ``"sequential"``)."""
    import pycolmap

    if matcher == "exhaustive":
        pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = options.sequential_overlap
        pycolmap.match_sequential(database, pairing_options=pairing, device=pycolmap.Device.cpu)


def map_images(database: Path, image_dir: Path, out_dir: Path, on_image=None):
    """Incremental mapping; returns the model with the most registered images (a ``pycolmap.Reconstruction``).

    ``on_image`` is called each time the mapper tries to register a further image.
    """
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    out_dir.mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(database, image_dir, out_dir, options=options,
                                          next_image_callback=on_image)
    if not models:
        raise OmnifieldError(f"{image_dir}: no camera poses could be recovered (no two images matched well enough); "
                             "try photos with more overlap and texture, or a larger --max-image-size")
    return max(models.values(), key=lambda m: (m.num_reg_images(), m.num_points3D()))


def undistort(model_dir: Path, image_dir: Path, out_dir: Path):
    """Undistort the registered images to PINHOLE into ``out_dir/images``; returns the undistorted model."""
    import pycolmap

    pycolmap.undistort_images(out_dir, model_dir, image_dir, output_type="COLMAP")
    return pycolmap.Reconstruction(out_dir / "sparse")
