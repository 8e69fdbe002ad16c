"""On-disk answers of one expert, so a failed run resumes without recomputing.

One SQLite file per expert identity (see ``ExpertSpec.identity``) and rank; each row maps
a request key to the answer stored as JSON (never pickle: a cache folder may be shared,
and reading it must not run code). A file that is not a store of this format (truncated,
garbage, another schema, a newer version) is moved aside with one warning and the run
recomputes; a folder that cannot be written gives one warning and the run goes on uncached.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)

FORMAT = "benchcoe-result-store"
VERSION = 2
SUFFIX = ".sqlite"
BUSY_TIMEOUT_S = 60.0  # several runs may share a cache: wait for another writer instead of failing


class StoreUnusable(Exception):
    """The file is not a result store this version can read (why in the message)."""


def encode_answer(value: Any) -> str:
    """JSON of an answer; tuples (lm-eval's loglikelihood answers) keep their type."""

    def tag(item: Any) -> Any:
        if isinstance(item, tuple):
            return {"__tuple__": [tag(i) for i in item]}
        if isinstance(item, list):
            return [tag(i) for i in item]
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item) or "__tuple__" in item:
                raise TypeError("a dict answer with non-string keys")
            return {k: tag(v) for k, v in item.items()}
        if item is None or isinstance(item, (str, int, float, bool)):
            return item
        raise TypeError(f"an answer of type {type(item).__name__}")

    return json.dumps(tag(value), allow_nan=True)


def decode_answer(text: Any) -> Any:
    """The answer stored by ``encode_answer``; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"a stored value of type {type(text).__name__}, not JSON text")

    def untag(item: Any) -> Any:
        if isinstance(item, dict):
            if set(item) == {"__tuple__"} and isinstance(item["__tuple__"], list):
                return tuple(untag(i) for i in item["__tuple__"])
            return {k: untag(v) for k, v in item.items()}
        if isinstance(item, list):
            return [untag(i) for i in item]
        return item

    try:
        return untag(json.loads(text))
    except RecursionError:
        raise ValueError("a stored value nested too deeply to be an answer") from None


def answer_fits(request_type: str, value: Any) -> bool:
    """Whether a stored value has the shape the harness expects of an answer of ``request_type``."""
    number = (int, float)
    if request_type.startswith("generate_until"):
        return isinstance(value, str)
    if request_type == "loglikelihood":
        return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], number)
                and isinstance(value[1], bool))
    if request_type == "loglikelihood_rolling":
        return isinstance(value, number) and not isinstance(value, bool)
    return True


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def open_store_file(path: Path, create: bool) -> sqlite3.Connection:
    """A connection to a valid store at ``path``; raises StoreUnusable for any other file."""
    existed = path.exists()
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if existed:
            check = connection.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise StoreUnusable(f"damaged ({check[0] if check else 'no answer'})")
        tables = _tables(connection)
        if not tables and create:
            # one transaction, so a run sharing the folder sees no store or a complete one
            connection.execute("BEGIN IMMEDIATE")
            try:
                if not _tables(connection):
                    connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                    connection.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT)")
                    connection.execute("INSERT INTO meta VALUES ('format', ?), ('version', ?)", (FORMAT, str(VERSION)))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            tables = _tables(connection)
        if tables != {"meta", "answers"}:
            raise StoreUnusable(f"another schema (tables {sorted(tables)})")
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise StoreUnusable(f"another format ({meta.get('format')!r})")
        if str(meta.get("version")) != str(VERSION):
            raise StoreUnusable(f"format version {meta.get('version')!r}, this package reads {VERSION}")
        columns = [row[1] for row in connection.execute("PRAGMA table_info(answers)")]
        if columns != ["key", "value"]:
            raise StoreUnusable(f"another answers table (columns {columns})")
    except sqlite3.DatabaseError as error:
        connection.close()
        raise StoreUnusable(f"not a readable SQLite file ({error})") from None
    except StoreUnusable:
        connection.close()
        raise
    return connection


def set_aside(path: Path, why: str) -> None:
    """Move an unusable store out of the way (kept for inspection), with one warning naming it."""
    target = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        path.replace(target)
        logger.warning("benchcoe: result cache file %s is unusable (%s); moved it to %s and recomputing",
                       path, why, target.name)
    except OSError as error:
        logger.warning("benchcoe: result cache file %s is unusable (%s) and could not be moved aside (%s); "
                       "ignoring it", path, why, error)


class ResultStore:
    """Answers of one expert identity; ``usable`` is False when the folder cannot be written."""

    def __init__(self, folder: Path, expert_identity: str, rank: int = 0, label: str | None = None) -> None:
        self.folder = Path(folder)
        self.identity = expert_identity
        self.path = self.folder / f"{expert_identity}.rank{rank}{SUFFIX}"
        self._connection: sqlite3.Connection | None = None
        self._warned_entries = False
        self._skipped: set[Path] = set()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._connection = self._open(self.path)
            if label is not None and self._connection is not None:
                self._connection.execute("INSERT OR REPLACE INTO meta VALUES ('expert', ?)", (label,))
        except (OSError, sqlite3.Error, StoreUnusable) as error:
            logger.warning("benchcoe: cannot write the result cache in %s (%s); this run goes on without "
                           "caching. Set result_cache to a writable folder, or result_cache: false.",
                           self.folder, error)

    @property
    def usable(self) -> bool:
        return self._connection is not None

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        """This rank's own store: an unusable file there is set aside and a new one created."""
        try:
            return open_store_file(path, create=True)
        except StoreUnusable as error:
            set_aside(path, str(error))
        return open_store_file(path, create=True)

    def _sibling_paths(self) -> list[Path]:
        """Files of the same expert written by other ranks (a run with another world size)."""
        return sorted(p for p in self.folder.glob(f"{self.identity}.rank*{SUFFIX}") if p != self.path)

    def _read(self, connection: sqlite3.Connection, keys: list[str], found: dict[str, Any]) -> None:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = connection.execute(
                f"SELECT key, value FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            for key, value in rows:
                try:
                    found[key] = decode_answer(value)
                except ValueError as error:
                    if not self._warned_entries:
                        self._warned_entries = True
                        logger.warning("benchcoe: ignoring result cache entries that are not JSON answers in "
                                       "%s (%s); they are recomputed", self.folder, error)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        if self._connection is None:
            return found
        paths = [self.path] + self._sibling_paths()
        for path in paths:
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            connection = self._connection if path == self.path else None
            try:
                # another rank's file is only read, never set aside: it may be that rank's store being created
                # right now, and moving it would leave that rank writing to a file that is gone
                connection = connection or open_store_file(path, create=False)
                self._read(connection, missing, found)
            except (StoreUnusable, sqlite3.DatabaseError) as error:
                if path == self.path:
                    self._drop(path, connection, str(error))
                else:
                    connection = None if isinstance(error, StoreUnusable) else connection
                    self._skip_sibling(path, error)
            finally:
                if connection is not None and connection is not self._connection:
                    connection.close()
        return found

    def _skip_sibling(self, path: Path, error: Exception) -> None:
        if path not in self._skipped:
            self._skipped.add(path)
            logger.warning("benchcoe: not reading the result cache file %s of another rank (%s); its answers are "
                           "recomputed where needed", path.name, error)

    def _drop(self, path: Path, connection: sqlite3.Connection | None, why: str) -> None:
        if connection is self._connection:
            self._connection.close()
            self._connection = None
            set_aside(path, why)
            try:
                self._connection = open_store_file(path, create=True)
            except (StoreUnusable, OSError, sqlite3.Error):
                self._connection = None
                logger.warning("benchcoe: going on without a result cache in %s", self.folder)
        else:
            set_aside(path, why)

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        if self._connection is None:
            return
        rows, skipped = [], []
        for key, value in items:
            try:
                rows.append((key, encode_answer(value)))
            except TypeError as error:
                skipped.append((key, error))
        if skipped:  # one line per batch: an expert whose answers are all unencodable would flood the log
            logger.warning("benchcoe: not caching %d answer(s) of this batch in %s, which are not JSON data (first: "
                           "%s, %s); they are answered again on a rerun", len(skipped), self.path,
                           skipped[0][0][:12], skipped[0][1])
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.executemany("INSERT OR REPLACE INTO answers (key, value) VALUES (?, ?)", rows)
            self._connection.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            logger.warning("benchcoe: cannot write the result cache %s (%s); going on without caching",
                           self.path, error)
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def describe_store_file(path: Path) -> dict[str, Any]:
    """Entries, size, last change and expert label of one store file (``error`` if unusable)."""
    stat = path.stat()
    info: dict[str, Any] = {"file": path.name, "bytes": stat.st_size, "modified": stat.st_mtime}
    try:
        connection = open_store_file(path, create=False)
    except (StoreUnusable, sqlite3.Error) as error:
        return {**info, "error": str(error)}
    try:
        info["entries"] = connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        row = connection.execute("SELECT value FROM meta WHERE key = 'expert'").fetchone()
        info["expert"] = row[0] if row else None
    finally:
        connection.close()
    return info
