"""Schema migrations, applied with Alembic (never ``create_all``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from processor.storage.schema import INGEST_TXID, exists_on, is_partition


def alembic_config(url: str) -> Config:
    package = Path(__file__).resolve().parent.parent
    # Installed wheels carry the scripts inside the package; a checkout has them at the top.
    for root in (package, package.parent.parent):
        ini = root / "alembic.ini"
        if ini.is_file() and (root / "alembic").is_dir():
            config = Config(str(ini))
            config.set_main_option("script_location", str(root / "alembic"))
            break
    else:
        raise FileNotFoundError("alembic scripts not found beside the package or the checkout")
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def compare_options(dialect_name: str) -> dict[str, Any]:
    """How the models are compared with a database (autogenerate, and the schema test)."""
    return {
        "compare_type": True,
        # Checked: both dialects report server defaults reliably (no false differences), except
        # that SQLite has no identity columns to report (its autoincrement rowid stands in).
        "compare_server_default": _identity_blind if dialect_name == "sqlite" else True,
        "include_object": exists_on(dialect_name),
        # Daily partitions are made at run time, not by migrations; their parents are compared.
        "include_name": lambda name, type_, parents: (
            not (type_ == "table" and name is not None and is_partition(name))
        ),
    }


def _identity_blind(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """SQLite: an identity column's missing default is no difference; else compare as usual."""
    if metadata_column.identity is not None and inspected_default is None:
        return False
    default = metadata_column.server_default
    if default is not None and default.arg is INGEST_TXID and inspected_default is None:
        return False  # PostgreSQL's alone
    return None
