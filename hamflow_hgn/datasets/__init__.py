"""Internals of :mod:`hamflow_hgn.data`: simulation workers and the on-disk format."""
