"""Nullability from Postgres itself, through the migrations proxy (``--proxy``)."""

from __future__ import annotations

from ..errors import ConfigError
from ..pg import PgError, connect
from ._fetch import GenerateError

__all__ = ["introspect_not_null"]

_NOT_NULL = """
SELECT c.table_name::text, c.column_name::text
FROM information_schema.columns c
WHERE c.table_schema = 'public' AND c.is_nullable = 'NO'
ORDER BY c.table_name, c.ordinal_position
"""


async def introspect_not_null(proxy_url: str, *, within: float = 30.0) -> dict[str, frozenset[str]]:
    """Per table of the ``public`` schema, its NOT NULL columns, read over ``proxy_url``
    (a ``postgresql://`` URL of the migrations proxy, or of the local end of a proxy tunnel)."""
    try:
        async with await connect(proxy_url, connect_timeout=within) as conn:
            rows = await conn.fetch(_NOT_NULL)
    except (ConfigError, ValueError) as exc:
        raise GenerateError(f"bad proxy URL: {exc}") from None
    except (PgError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GenerateError(f"introspection through the proxy failed: {first}") from None
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column))
    return {table: frozenset(columns) for table, columns in found.items()}
