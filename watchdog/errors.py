"""Errors that end a command with a one-line message and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (a path, a flag, a file); the message says what and where."""
