"""The error every sandbox operation raises when it cannot be done."""

from __future__ import annotations


class OperationError(Exception):
    """A user-requested operation could not be done; the message says why and what to do."""
