"""pytest plugin: models (filled in by its owner)."""
