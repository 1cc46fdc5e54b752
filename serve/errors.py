"""The error every protocol parser raises for a request it cannot accept, and how a bad
value is quoted back in its message."""

from __future__ import annotations

_QUOTED = 80  # characters of a bad value quoted back in an error


class ProtocolError(ValueError):
    """A request the protocol cannot accept; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def quoted(value: object) -> str:
    """A client's value as an error quotes it back: its repr, cut at _QUOTED characters."""
    text = repr(value)
    return text if len(text) <= _QUOTED else text[:_QUOTED] + "..."
