"""Training losses shared by the apps: S3IM over a ray batch and the photometric loss on rendered views."""

from omnifield.losses.photometric import S3IM_RAYS, photometric_loss, s3im_on_pixels
from omnifield.losses.s3im import s3im_loss

__all__ = ["S3IM_RAYS", "photometric_loss", "s3im_loss", "s3im_on_pixels"]
