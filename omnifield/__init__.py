"""omnifield: neural fields and 3D reconstruction with interchangeable backends."""

__version__ = "0.1.0"
