"""Errors raised by the Postgres client."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ElectricError

# ErrorResponse field codes (protocol-error-fields.html).
_FIELD_NAMES = {
    "S": "severity",
    "V": "severity_nonlocalized",
    "C": "sqlstate",
    "M": "message",
    "D": "detail",
    "H": "hint",
    "P": "position",
    "p": "internal_position",
    "q": "internal_query",
    "W": "where",
    "s": "schema_name",
    "t": "table_name",
    "c": "column_name",
    "d": "data_type_name",
    "n": "constraint_name",
    "F": "file",
    "L": "line",
    "R": "routine",
}


class PgError(ElectricError):
    """An error reported by a Postgres server, or met while talking to one.

    Server errors carry the fields of the ErrorResponse: ``sqlstate``, ``message``, ``detail``,
    ``hint`` and the rest in ``fields`` (keyed by the long names of the protocol docs).
    """

    sqlstate: str | None
    message: str
    severity: str | None
    detail: str | None
    hint: str | None
    fields: dict[str, str]

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        severity: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message
        self.sqlstate = sqlstate
        self.severity = severity
        self.detail = detail
        self.hint = hint
        self.fields = dict(fields or {})
        super().__init__(message)

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> PgError:
        """Builds the right subclass from an ErrorResponse's field codes."""
        named = {_FIELD_NAMES.get(k, k): v for k, v in raw.items()}
        sqlstate = named.get("sqlstate")
        kind: type[PgError] = PgAuthError if sqlstate in ("28P01", "28000") else cls
        return kind(
            named.get("message", "unknown error"),
            sqlstate=sqlstate,
            severity=named.get("severity_nonlocalized") or named.get("severity"),
            detail=named.get("detail"),
            hint=named.get("hint"),
            fields=named,
        )

    def __str__(self) -> str:
        text = self.message
        if self.severity and self.sqlstate:
            text = f"{self.severity}: {text} (SQLSTATE {self.sqlstate})"
        if self.detail:
            text += f"\nDETAIL: {self.detail}"
        if self.hint:
            text += f"\nHINT: {self.hint}"
        return text


class PgConnectError(PgError):
    """The server could not be reached, or the connection could not be set up (TLS, protocol)."""


class PgAuthError(PgError):
    """The server refused our credentials (SQLSTATE 28P01 or 28000)."""


class ConnectionLostError(PgError):
    """The connection broke (server gone, socket closed) while in use; it cannot be used again."""
