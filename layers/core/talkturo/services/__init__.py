"""The domain core: what the platform does, independent of how it is called."""
