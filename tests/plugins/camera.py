"""pytest plugin: camera (filled in by its owner)."""
