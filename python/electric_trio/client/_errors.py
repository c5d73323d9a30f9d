"""The client's errors; every one is an :class:`~electric_trio.errors.ElectricError`."""

from __future__ import annotations

from ..errors import ElectricError


class ClientError(ElectricError):
    """Root of the local-first client's errors."""


class CorruptDatabaseError(ClientError):
    """The local SQLite file is not a database, is damaged, or lacks the client's tables."""


class SchemaMismatchError(ClientError):
    """The schema's migrations no longer match the local database or the service
    (``UNKNOWN_SCHEMA_VSN``)."""


class AuthError(ClientError):
    """The service refused the token."""


class ConnectionFailedError(ClientError):
    """The service could not be reached (bad URL, refused connection, retries exhausted)."""


class ProtocolViolationError(ClientError):
    """The service sent something the protocol does not allow."""


class SubscriptionError(ClientError):
    """The service refused a shape subscription or could not deliver its data."""


class ClientClosedError(ClientError):
    """The client was disconnected or closed while the operation waited."""
