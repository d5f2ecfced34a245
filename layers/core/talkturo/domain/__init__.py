"""The domain's own types (pydantic). Every part of the platform speaks these."""
