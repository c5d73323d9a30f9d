"""The DDLX statements the proxy understands (server-behaviour.md §4), recognised on the text of
one statement that the Postgres parser refused at an ``ELECTRIC`` token.

Only the shape of each command is read here: ENABLE/DISABLE with their table, and the command
tag of the others (GRANT, REVOKE, ASSIGN, UNASSIGN, SQLITE), which the proxy refuses with
``EX001`` unless a feature flag turns them on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DdlxCommand", "DdlxSyntaxError", "parse_ddlx"]

_IDENT = r'(?:"(?:[^"]|"")+"|[^\W\d][\w$]*)'
_NAME = rf"({_IDENT})(?:\s*\.\s*({_IDENT}))?"
_ALTER = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?{_NAME}\s+(ENABLE|DISABLE)\s+ELECTRIC\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ELECTRIC = re.compile(rf"^\s*ELECTRIC\s+(ENABLE|DISABLE)\s+{_NAME}\s*;?\s*$", re.I | re.DOTALL)
_OTHER = re.compile(r"^\s*ELECTRIC\s+(GRANT|REVOKE|ASSIGN|UNASSIGN|SQLITE)\b", re.I | re.DOTALL)
# ELECTRIC as a token outside quotes: what tells a DDLX statement from a plain syntax error.
_ELECTRIC_TOKEN = re.compile(r"\bELECTRIC\b", re.IGNORECASE)


class DdlxSyntaxError(ValueError):
    """A statement with ``ELECTRIC`` in it that is no DDLX command we know."""


@dataclass(frozen=True)
class DdlxCommand:
    #: ``ENABLE``, ``DISABLE``, ``GRANT``, ``REVOKE``, ``ASSIGN``, ``UNASSIGN`` or ``SQLITE``.
    action: str
    #: ``(schema, table)`` for ENABLE / DISABLE.
    table: tuple[str, str] | None = None

    @property
    def tag(self) -> str:
        """The command tag the client gets (empty for SQLITE, as in the original)."""
        return "" if self.action == "SQLITE" else f"ELECTRIC {self.action}"

    @property
    def flag(self) -> str:
        """The ``ELECTRIC_FEATURES`` flag that allows this command (DISABLE and SQLITE have none
        of their own and fall back to ``__default__``, which is off)."""
        if self.action in ("GRANT", "REVOKE", "ASSIGN", "UNASSIGN"):
            return f"proxy_ddlx_{self.action.lower()}"
        return "__default__"


def _ident(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _table(first: str, second: str | None) -> tuple[str, str]:
    if second is None:
        return ("public", _ident(first))
    return (_ident(first), _ident(second))


def looks_like_ddlx(sql: str) -> bool:
    return _ELECTRIC_TOKEN.search(sql) is not None


def parse_ddlx(sql: str) -> DdlxCommand:
    """The DDLX command in ``sql`` (one statement); raises :class:`DdlxSyntaxError`."""
    m = _ALTER.match(sql)
    if m:
        return DdlxCommand(m.group(3).upper(), _table(m.group(1), m.group(2)))
    m = _ELECTRIC.match(sql)
    if m:
        return DdlxCommand(m.group(1).upper(), _table(m.group(2), m.group(3)))
    m = _OTHER.match(sql)
    if m:
        return DdlxCommand(m.group(1).upper())
    raise DdlxSyntaxError(f"syntax error in {sql.strip()[:80]!r}")
