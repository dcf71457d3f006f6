"""Errors that the CLI turns into a one-line reason and a non-zero exit."""

from __future__ import annotations


class PinfeaturesError(Exception):
    """Base class: anything the user can fix by changing inputs or settings."""


class ConfigError(PinfeaturesError):
    """A setting (flag or TOML key) that cannot work."""


class InputError(PinfeaturesError):
    """An input file that cannot be used as a whole: missing, unreadable, a missing column, a wrong type.

    The message names the file, and the column (and row) where there is one.
    """

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None, row: int | None = None):
        parts = [p for p in (file, f"column '{column}'" if column else None, f"row {row}" if row is not None else None) if p]
        super().__init__(f"{': '.join([', '.join(parts), message]) if parts else message}")
        self.file = file
        self.column = column
        self.row = row


class ModelError(PinfeaturesError):
    """A model folder / id that cannot be loaded as what was asked for."""
