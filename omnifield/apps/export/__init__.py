"""Exports of trained runs to files other tools open: meshes, point clouds, videos."""
