"""Receivers: the protocol edges in front of the pipeline."""
