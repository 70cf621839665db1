"""Fitting programs for 2-D images and 3-D signed distances with any field backend."""
