"""Schema migrations, applied with Alembic (never ``create_all``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config


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
