"""The one exception family the CLI turns into a single line and exit status 2."""

from __future__ import annotations

#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130


class PoolconformError(Exception):
    """A usage, configuration or input error: the user can fix it, no traceback needed."""


class CaseError(PoolconformError):
    """A pooling case that ONNX cannot express (the reason is the message).

    `category` is the short reason a matrix expansion counts drops under.
    """

    def __init__(self, message: str, category: str | None = None) -> None:
        super().__init__(message)
        self.category = category or message


class MatrixError(PoolconformError):
    """A matrix file or option that cannot be expanded."""


class ModelError(PoolconformError):
    """A model or test-data file that cannot be read safely."""
