"""The photos of an input folder: listed by name, each checked readable, all of one size."""

from __future__ import annotations

from pathlib import Path

from omnifield.errors import OmnifieldError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def list_images(folder: Path) -> list[str]:
    """Sorted names of the image files directly inside ``folder`` (hidden files skipped)."""
    names = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise OmnifieldError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    return names


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image after decoding it (JPEGs at 1/8 scale, so the check stays fast).

    Raises :class:`OmnifieldError` naming the file when it cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            size = img.size
            img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt files
        raise OmnifieldError(f"{path}: cannot read image ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    return size


def check_images(folder: Path, names: list[str]) -> tuple[int, int]:
    """The common ``(width, height)`` of the images ``names`` in ``folder``; one camera model is shared by all."""
    sizes = {name: image_size(folder / name) for name in names}
    first = sizes[names[0]]
    for name, size in sizes.items():
        if size != first:
            raise OmnifieldError(f"{folder / name}: size {size[0]}x{size[1]} differs from {names[0]}'s "
                                 f"{first[0]}x{first[1]}; all photos must share one camera and orientation")
    return first
