"""Reconstruction from posed images: train, evaluate, render."""
