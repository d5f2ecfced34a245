"""Talkturo: the shared domain package (models, data access, services, adapters)."""

__version__ = "0.1.0"
