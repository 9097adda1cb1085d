"""The embedded default's broker: kombu's SQLAlchemy transport on its own SQLite file.

Kombu's filesystem transport, the earlier default, hands a reader files that are still being
written (its exchange tables and its messages): JSONDecodeError, and the worker died with the
demo around it. Here a message is a row written in one transaction, so a reader sees all of it
or nothing. The broker has its own file so the worker's polls (each takes SQLite's write lock,
kombu's BEGIN IMMEDIATE) never queue behind Gantry's own writes.
"""

import sqlite3
from pathlib import Path

# Busy SQLite waits this long for the lock instead of failing a publish.
LOCK_TIMEOUT = 30


def embedded(var_dir: Path) -> tuple[str, dict]:
    """The broker URL and transport options for the broker file under `var_dir`."""
    path = var_dir / "broker.sqlite3"
    return f"sqla+sqlite:///{path}", {"connect_args": {"timeout": LOCK_TIMEOUT}}


def path_of(url: str) -> Path | None:
    """The SQLite file behind an embedded broker URL, or None for any other broker."""
    prefix = "sqla+sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def prepare(url: str, options: dict) -> None:
    """Create the broker's tables once, at migrate time: worker and beat starting together
    would otherwise race to create them and one would die of "table already exists"."""
    if path_of(url) is None:
        return
    from kombu import Connection

    with Connection(url, transport_options=options) as connection:
        connection.default_channel.session.close()


def prune(url: str) -> int:
    """Delete the messages already handed to a worker (kombu keeps them, visible = 0), so the
    file stays small however long the demo runs. Returns how many went."""
    path = path_of(url)
    if path is None or not path.exists():
        return 0
    with sqlite3.connect(path, timeout=LOCK_TIMEOUT) as db:
        try:
            return db.execute("DELETE FROM kombu_message WHERE visible = 0").rowcount
        except sqlite3.OperationalError:  # no table yet: nothing was ever sent
            return 0
