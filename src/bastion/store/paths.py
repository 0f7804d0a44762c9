"""Where the store lives on disk by default: one directory per deployment, one SQLite file in it."""

from __future__ import annotations

import os
from pathlib import Path


def bastion_home() -> Path:
    """$BASTION_HOME, else ./bastion-data under the working directory; not created here.

    Creating it is left to `Store.open`, which gives it mode 0o700: the directory holds key
    hashes and logged content, so only the service's own user should read it.
    """
    env = os.environ.get("BASTION_HOME")
    home = Path(env).expanduser() if env else Path("bastion-data")
    return home.absolute()


def default_database_url(home: Path) -> str:
    """The SQLite URL of the database inside `home` (a PostgreSQL URL can be given instead)."""
    return f"sqlite:///{home}/bastion.db"
