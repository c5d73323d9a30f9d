"""Erlang term order, to sort constraints the way the original service did.

The original kept a table's constraints sorted by Erlang's built-in term order of its protobuf
structs (so a CREATE TABLE lists CHECKs, then FOREIGN KEYs ordered by their columns, then the
PRIMARY KEY, then UNIQUEs), and clients see that order in the generated SQLite DDL and in
``SatOpMigrate.Table.fks``. :func:`term_key` maps a Python value standing for an Erlang term to a
key with the same order: number < atom < tuple < map < list < binary; atoms and binaries compare
by their text, tuples and maps first by size, maps then by their sorted keys and then by their
values in key order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Atom", "Term", "elixir_struct", "term_key"]


@dataclass(frozen=True, slots=True)
class Atom:
    """An Erlang atom (``true``, ``false`` and ``nil`` are also written as Python bools/None)."""

    name: str


# Python stand-ins: bool/None/Atom = atom, int/float = number, str = binary, list = list,
# tuple = tuple, dict = map (keys are Atoms).
Term: TypeAlias = (
    "bool | Atom | int | float | str | list[Term] | tuple[Term, ...] | dict[Atom, Term] | None"
)
_Key: TypeAlias = tuple[object, ...]


def term_key(term: Term) -> _Key:
    """A sort key that orders Python stand-ins as Erlang orders the terms they stand for."""
    if term is None:
        return (1, "nil")
    if isinstance(term, bool):
        return (1, "true" if term else "false")
    if isinstance(term, Atom):
        return (1, term.name)
    if isinstance(term, int | float):
        return (0, term)
    if isinstance(term, str):
        return (9, term.encode())
    if isinstance(term, tuple):
        return (6, len(term), tuple(term_key(t) for t in term))
    if isinstance(term, list):
        return (8, tuple(term_key(t) for t in term))
    keys = sorted(term, key=term_key)
    return (
        7,
        len(term),
        tuple(term_key(k) for k in keys),
        tuple(term_key(term[k]) for k in keys),
    )


def elixir_struct(module: str, **fields: Term) -> dict[Atom, Term]:
    """The map an Elixir struct of ``module`` is, with ``fields``."""
    term: dict[Atom, Term] = {Atom("__struct__"): Atom(f"Elixir.{module}")}
    for name, value in fields.items():
        term[Atom(name)] = value
    return term
