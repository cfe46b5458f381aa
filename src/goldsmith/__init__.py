"""Goldsmith: a self-hosted machine-image service that speaks EC2."""

__version__ = "0.1.0"
