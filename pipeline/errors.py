"""Errors a user can cause. The CLI prints their message on one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or bad usage: the message names the input and says what to do."""


class SourceError(UserError):
    """A source cannot be read at all (missing, unsupported, or without required columns)."""


class BatchRefused(UserError):
    """Too large a share of a source failed validation; nothing of it was written."""


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the message says which one and how to fix it."""
