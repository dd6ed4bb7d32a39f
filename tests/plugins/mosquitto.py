"""pytest plugin: mosquitto (filled in by its owner)."""
