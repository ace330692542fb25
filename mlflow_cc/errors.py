"""Exceptions raised by mlflow-cc."""

from __future__ import annotations


class MlflowCCError(Exception):
    """Base class of every error mlflow-cc raises on purpose."""


class LineageError(MlflowCCError):
    """A parent or extra input cannot be used: unknown, deleted, or in another store."""


class OperationError(MlflowCCError, ValueError):
    """An operation name or parameter is invalid."""


class ArtifactError(MlflowCCError):
    """An artifact is missing, unreadable or too large."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        #: "not logged", "unreadable" or "too large": shown next to the model in the app.
        self.reason = reason


class StoreUnreachableError(MlflowCCError):
    """The tracking store did not answer."""
