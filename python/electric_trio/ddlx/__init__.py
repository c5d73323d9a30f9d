"""Electric's side of Postgres: the ``electric`` schema, electrification, migration capture."""

from .install import PUBLICATION_NAME as PUBLICATION_NAME
from .install import SESSION_SETTINGS as SESSION_SETTINGS
from .install import Migration as Migration
from .install import install_electric_schema as install_electric_schema
from .install import migrations as migrations
from .install import prepare_session as prepare_session

__all__ = [
    "PUBLICATION_NAME",
    "SESSION_SETTINGS",
    "Migration",
    "install_electric_schema",
    "migrations",
    "prepare_session",
]
