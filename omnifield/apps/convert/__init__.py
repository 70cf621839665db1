"""``omnifield convert``: a trained run distilled into another field architecture or into Gaussians."""
