"""Where each cell's Optuna study lives, opened for the sweep that writes it or read-only.

- ``--study-storage URL`` of a database (postgresql://, mysql://, sqlite:///...): every cell's
  study in it (``rdb``: connected to, its schema made, every failure one StorageError line).
- A local or NFS ``--storage``: the journal file ``<storage>/optuna/<cell>.journal``.
- An object store ``--storage`` (s3://, gs://): the same journal, kept as a file on the driver's
  machine and synced to the object store (results.synced_journal).

Read-only commands (``python -m results ...``, ``--status``) read the journal's bytes from the
object store into memory, creating nothing, or the local file of a writer in the same process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend

from results import store
from results.synced_journal import (
    BytesJournalBackend,
    JournalSync,
    SyncedJournalBackend,
    remote_bytes,
)

RDB_SCHEMES = ("postgresql", "mysql", "sqlite")
CONNECT_TIMEOUT_S = 10
"""How long the check of a database URL waits for its server."""
DRIVERS = {  # SQLAlchemy's driver module -> the pip package that brings it
    "psycopg": "pip install 'vae-sweeps[cluster]' (psycopg, SQLAlchemy's default driver for "
    "postgresql://)",
    "psycopg2": "pip install psycopg2-binary, or drop '+psycopg2' to use psycopg from "
    "pip install 'vae-sweeps[cluster]'",
    "pg8000": "pip install pg8000, or drop '+pg8000' to use psycopg from "
    "pip install 'vae-sweeps[cluster]'",
    "mysqldb": "pip install mysqlclient (or use mysql+pymysql:// with pip install PyMySQL)",
    "pymysql": "pip install PyMySQL",
}


OBJECTIVE = "best_val_loss"
"""The name of the value a cell's study holds for each COMPLETE trial (its best validation loss,
-ELBO in nats), which optuna-dashboard and Optuna's plots show instead of "Objective 0"."""

def is_rdb(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].split("+", 1)[0] in RDB_SCHEMES


def hidden(url: str) -> str:
    """A database URL with its password masked, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: say it as given
        return url


def rdb(url: str, timeout: float | None = None) -> optuna.storages.RDBStorage:
    """Optuna's storage in the database at ``url``, its schema created if missing; a driver
    that is not installed, a server that cannot be reached, credentials or a database it
    refuses, an SQLite file that is no database: one StorageError line naming the fix."""
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    shown = hidden(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except exc.NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        fix = " (write postgresql://)" if scheme == "postgres" else ""
        raise store.StorageError(
            f"--study-storage {shown}: SQLAlchemy knows no database {scheme}://{fix}; give a "
            "postgresql://, mysql:// or sqlite:/// URL, or leave it out to keep each study "
            "as a journal beside the results"
        ) from None
    except (exc.ArgumentError, ValueError) as e:
        raise store.StorageError(f"--study-storage {shown} is not a database URL ({e})") from None
    except ImportError as e:
        raise store.StorageError(missing_driver(shown, e)) from None
    kwargs: dict[str, Any] = {}
    if timeout is not None and parsed.get_backend_name() in ("postgresql", "mysql"):
        if dialect.driver in ("psycopg", "psycopg2", "mysqldb", "pymysql"):
            kwargs["connect_args"] = {"connect_timeout": int(timeout)}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError as e:
        raise store.StorageError(missing_driver(shown, e.__cause__ or e)) from None
    except exc.SQLAlchemyError as e:
        raise store.StorageError(rdb_error(shown, parsed, e)) from None
    except RuntimeError as e:  # Optuna's: a schema of another version
        raise store.StorageError(f"--study-storage {shown}: {store.one_line(e)}") from None


def missing_driver(shown: str, e: BaseException) -> str:
    name = getattr(e, "name", None) or str(e)
    driver = (name or "").split(".")[0].lower()
    fix = DRIVERS.get(driver, f"pip install the package that provides {name!r}")
    return f"--study-storage {shown}: its database driver {name!r} is not installed: {fix}"


def rdb_error(shown: str, parsed, e: Exception) -> str:
    orig = getattr(e, "orig", None) or e  # the driver's error, without SQLAlchemy's wrapping
    why = " ".join((str(orig).strip().splitlines() or [type(orig).__name__])[0].split())
    why = why.split(" (Background on this error", 1)[0]
    low = why.lower()
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if "not a database" in low:
            fix = f"{path} is a file but not an SQLite database: give another file"
        elif "unable to open" in low and Path(path).is_dir():
            fix = f"{path} is a folder, not a database file: give a file's path"
        elif "unable to open" in low:
            fix = (f"cannot open or create {path}: its folder must exist and be writable "
                   "(an absolute path is sqlite:////abs/path.db)")  # fmt: skip
        else:
            fix = "check the file"
        return f"--study-storage {shown}: {why}; {fix}"
    if "password authentication failed" in low or "access denied" in low:
        fix = "check the user and password in the URL"
    elif "does not exist" in low or "unknown database" in low:
        fix = (f"create the database (createdb {parsed.database}) or correct its name in the "
               "URL")  # fmt: skip
    elif any(w in low for w in ("refused", "timeout", "timed out", "resolve host", "unreachable",
                                "no route", "can't connect", "could not translate")):  # fmt: skip
        fix = "is the database server running, and its host and port in the URL right?"
    else:
        fix = "check the URL and the database server"
    return f"--study-storage {shown}: cannot use the database ({why}): {fix}"


def check_url(url: str) -> None:
    """What a sweep checks of ``--study-storage`` before Ray starts: a database is connected to
    and its Optuna schema made; a storage location (a path or an object-store URI, where the
    journals then live) must open. Raises StorageError with one line."""
    if is_rdb(url):
        rdb(url, timeout=CONNECT_TIMEOUT_S).engine.dispose()
        return
    if "://" not in url:
        return  # a folder for the journals, made when a cell's study is
    scheme = url.split("://", 1)[0]
    try:
        store.filesystem(url)
    except store.StorageError:
        fix = " (write postgresql://)" if scheme == "postgres" else ""
        raise store.StorageError(
            f"--study-storage {hidden(url)}: nothing here handles {scheme}://{fix}; give a "
            "postgresql://, mysql:// or sqlite:/// URL, or leave it out to keep each study as a "
            "journal beside the results"
        ) from None
    store.check_reachable(url)


def study_storage(storage: str, sweep: str, study_url: str | None = None, create: bool = True):
    """The Optuna storage of a cell: the database ``study_url`` (or ``storage`` itself, when it
    is a database URL), else the cell's journal under ``study_url or storage`` (a local path,
    or an object store: SyncedJournalBackend).

    With ``create=False`` (read-only commands) a journal that does not exist is None, never
    created, and an object store's journal is read into memory.
    """
    url = study_url or storage
    if is_rdb(url):
        if url.startswith("sqlite:///"):
            sqlite_file = Path(url.removeprefix("sqlite:///"))
            if not create and not sqlite_file.is_file():
                return None  # opening it would create the database file
        return rdb(url, timeout=None if create else CONNECT_TIMEOUT_S)
    fs, root = store.filesystem(url)
    if fs.type_name == "local":
        path = Path(root) / "optuna" / f"{sweep}.journal"
        if not create and not path.is_file():
            return None
        if path.exists():
            checked_journal(url, path.read_bytes() if path.is_file() else b"", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if create:
        return optuna.storages.JournalStorage(SyncedJournalBackend(url, sweep))
    writer = JournalSync.live(url, sweep)
    if writer is not None:  # this process writes it: its local file is the newest
        return optuna.storages.JournalStorage(JournalFileBackend(str(writer.local)))
    data = remote_bytes(url, sweep)
    if data is None:
        return None
    checked_journal(url, data, journal_uri(url, sweep))
    return optuna.storages.JournalStorage(BytesJournalBackend(data))


def journal_uri(storage: str, sweep: str) -> str:
    """A cell's journal as a person would type it."""
    fs, root = store.filesystem(storage)
    return store.uri(storage, f"{root}/optuna/{sweep}.journal")


def checked_journal(storage: str, data: bytes, file: str) -> None:
    """Damaged (results.damage.journal) unless each complete line of the journal is an
    operation Optuna can replay. A folder in the journal's place reads as b"": damaged too."""
    from results import damage

    if not data and Path(file).is_dir():
        raise damage.Damaged(file, "a folder, not a journal file", damage.restore(storage))
    damage.journal(data, file, storage)


def flush(storage: str, sweep: str) -> None:
    """Upload a cell's journal now if this process changed it since its last upload (a cell's
    end); nothing for a database or a local journal."""
    if (writer := JournalSync.live(storage, sweep)) is not None:
        writer.flush(final=True)
