"""Persistent, resumable, multi-writer store of run records (one SQLite file per sweep folder).

A sweep writes one *record* per finished run: a flat dict of JSON scalars (``str``, ``int``,
``float`` including NaN and ±inf, ``bool``, ``None``). Records live in ``folder/records.sqlite``,
keyed by :func:`config_key`, the SHA-256 of the run's canonical config JSON.

Guarantees
----------
* **Resume.** A rerun asks :meth:`RunStore.missing` and trains only those configs.
* **Kill safety.** Each :meth:`RunStore.put` / :meth:`RunStore.put_many` is one SQLite transaction
  (WAL journal, ``synchronous=FULL``): a process killed at any moment leaves every committed record
  complete and no partial one. A first write never overwrites: a key already present keeps its row.
* **Concurrent writers.** Several processes may write to the same folder at once; writes take the
  write lock up front (``BEGIN IMMEDIATE``) and wait up to ``BUSY_TIMEOUT_S`` for it.
* **No damage to foreign files.** Opening validates the file read-only before anything is written:
  a non-SQLite file, an SQLite database of something else, or a store of another schema version
  raises :class:`~infobound.errors.InputError` and leaves the file byte-identical.
* **Arrays beside records.** Schema 2 adds an ``arrays`` table: named numeric arrays per record
  (per-example losses, a trained adapter's grid indices), written in the record's transaction.
  A store of schema 1 (records only) still opens with ``read_only=True``, so ``infobound report``
  reads it; it is never written or migrated.

Standard library only (numpy is imported only to read arrays back).
"""

from __future__ import annotations

import csv
import datetime
import enum
import hashlib
import json
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from pathlib import Path

from ..errors import InputError
from ..files import atomic_output

__all__ = ["SCHEMA_VERSION", "PACKAGE", "OlderSchema", "RunStore", "config_key", "open_for_reading"]

SCHEMA_VERSION = 2
"""Layout version of ``records.sqlite`` that this version writes (records and arrays)."""

READABLE_VERSIONS = {1: frozenset({"meta", "records"}), 2: frozenset({"meta", "records", "arrays"})}
"""Versions this version reads, with their tables; only ``SCHEMA_VERSION`` is ever written."""

PACKAGE = "infobound"
"""Value of ``meta.package`` that marks a file as an infobound run store."""

BUSY_TIMEOUT_S = 60.0
"""Seconds a writer waits for another process's write lock before giving up."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = set(READABLE_VERSIONS[SCHEMA_VERSION])
_KEY_FIELD = "key"  # name under which records() / get() return the config key

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
    # seq is the rowid: strictly increasing since rows are never deleted, so it is insertion order.
    "CREATE TABLE records ("
    " seq INTEGER PRIMARY KEY,"
    " key TEXT NOT NULL UNIQUE,"
    " record TEXT NOT NULL,"  # JSON object; NaN/Infinity written as JSON extension tokens
    " config TEXT NOT NULL,"  # canonical config JSON (the text config_key hashes)
    " created_at TEXT NOT NULL)",  # ISO 8601, UTC
    # One row per named array of a record: raw little-endian bytes, numpy dtype string, shape JSON.
    "CREATE TABLE arrays ("
    " key TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " dtype TEXT NOT NULL,"
    " shape TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " PRIMARY KEY (key, name))",
)
_ARRAY_DTYPES = {"|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8", "|b1"}


# ----------------------------------------------------------------------------- canonical JSON


def _plain(value, where: str, allow_nonfinite: bool, nested: bool):
    """Return ``value`` as plain JSON types, or raise ``InputError`` naming ``where``.

    ``str`` subclasses (``str`` enums such as ``Mode``) become their string data; integral numbers
    (``numpy.int64`` too) become ``int``; other real numbers become ``float``. ``bool`` stays ``bool``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value, where, allow_nonfinite, nested)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        fvalue = float(value)
        if not allow_nonfinite and not math.isfinite(fvalue):
            raise InputError(f"{where} must be a finite number, got {fvalue!r}")
        return fvalue
    if nested and isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"{where} keys must be strings, got {k!r}")
            out[str.__str__(k)] = _plain(v, f"{where}.{k}", allow_nonfinite, nested)
        return out
    if nested and isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", allow_nonfinite, nested) for i, v in enumerate(value)]
    allowed = "a JSON value (str, int, float, bool, None, list, dict)" if nested else (
        "a JSON scalar (str, int, float, bool or None)"
    )
    raise InputError(f"{where} must be {allowed}, got {type(value).__name__} {value!r}")


def _top_mapping(name: str, value) -> None:
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a mapping of str to values, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise InputError(f"{name} keys must be strings, got {k!r}")


def canonical_config_json(config: Mapping) -> str:
    """The canonical JSON text of ``config``: sorted keys, no whitespace, floats via ``repr``.

    Values may be nested dicts/lists of JSON scalars; NaN, ±inf, non-string keys and non-JSON values
    raise ``InputError`` naming the key (``config.lr``, ``config.layers[2]``). Tuples encode as lists,
    ``1`` and ``1.0`` differ, and so do ``True`` and ``1``.
    """
    _top_mapping("config", config)
    plain = {str.__str__(k): _plain(v, f"config.{k}", False, True) for k, v in config.items()}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def config_key(config: Mapping) -> str:
    """SHA-256 hex digest of :func:`canonical_config_json` of ``config`` (dict order irrelevant)."""
    return hashlib.sha256(canonical_config_json(config).encode("ascii")).hexdigest()


def _record_json(record: Mapping) -> str:
    """JSON text of a flat record; NaN and ±inf round-trip through the ``NaN``/``Infinity`` tokens."""
    _top_mapping("record", record)
    if _KEY_FIELD in record:
        raise InputError(f"record must not contain the field {_KEY_FIELD!r} (it is the config key)")
    plain = {str.__str__(k): _plain(v, f"record.{k}", True, False) for k, v in record.items()}
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _not_about_content(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` is about access (busy, locked, read-only, cannot open), not the file's content."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (5, 6, 8, 14)  # SQLITE_BUSY, _LOCKED, _READONLY, _CANTOPEN
    return any(word in str(exc) for word in ("locked", "busy", "readonly", "unable to open"))


def _matches(value, wanted) -> bool:
    """Equality that keeps ``True`` apart from ``1``; a list/tuple/set ``wanted`` means 'any of'."""
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return any(_matches(value, w) for w in wanted)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


# ----------------------------------------------------------------------------- the store


class OlderSchema(InputError):
    """A store of an earlier readable schema was opened for writing (open it with ``read_only=True``)."""



class RunStore:
    """Records of finished runs in ``folder/records.sqlite``.

    ``RunStore(folder)`` creates the folder and the store when missing; ``create=False`` opens an
    existing store only. Use as a context manager, or call :meth:`close`. One instance per process:
    after a ``fork`` the child opens its own connection on first use.
    """

    FILENAME = "records.sqlite"

    def __init__(self, folder, create: bool = True, read_only: bool = False):
        if not isinstance(folder, (str, os.PathLike)):
            raise InputError(f"folder must be a path (str or pathlib.Path), got {type(folder).__name__}")
        self.folder = Path(folder)
        self.path = self.folder / self.FILENAME
        self.read_only = bool(read_only)
        if create and read_only:
            raise InputError("a run store opened read_only=True cannot be created; pass create=False")
        if create:
            self.check_writable(self.folder)
        else:
            if not self.folder.is_dir():
                raise InputError(f"folder {str(self.folder)!r} does not exist (create=False)")
            if not self.path.is_file():
                raise InputError(f"no run store {self.FILENAME!r} in folder {str(self.folder)!r}")
        self._pid = os.getpid()
        self.schema_version = SCHEMA_VERSION
        self._conn: sqlite3.Connection | None = self._open()

    # -- opening and validation ------------------------------------------------------------

    @staticmethod
    def check_writable(folder) -> Path:
        """Create ``folder`` if missing and prove a file can be written there; else ``InputError``.

        Cheap; call it before training so that an unwritable output folder fails at once.
        """
        path = Path(folder)
        if path.exists() and not path.is_dir():
            raise InputError(f"folder {str(path)!r} is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"folder {str(path)!r} cannot be created: {exc.strerror or exc}") from None
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-") as handle:
                handle.write(b"ok")
                handle.flush()
        except OSError as exc:
            raise InputError(f"folder {str(path)!r} is not writable: {exc.strerror or exc}") from None
        return path

    def _foreign(self, found: str) -> InputError:
        return InputError(
            f"{str(self.path)!r} is not an infobound run store: found {found}; expected an SQLite "
            f"database with tables {sorted(_TABLES)} and meta package={PACKAGE!r}, "
            f"schema_version={SCHEMA_VERSION}. Choose another output folder or move the file away."
        )

    def _check_header(self) -> None:
        """Refuse a non-empty file that is not SQLite before SQLite touches it."""
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputError(f"run store {str(self.path)!r} cannot be read: {exc}") from None
        if head and head != _SQLITE_MAGIC:
            raise self._foreign(f"a file that is not an SQLite database (starts with {head[:8]!r})")

    def _validate(self, conn: sqlite3.Connection) -> bool:
        """Read-only check of an existing database; True if it already is a valid store.

        Returns False for an empty database (fresh file, or a kill before the schema was written);
        raises ``InputError`` for anything else that is not a store of this schema version.
        """
        try:
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not row[0].startswith("sqlite_")
            }
        except sqlite3.DatabaseError as exc:
            if _not_about_content(exc):
                raise
            raise self._damaged(exc) from None
        if not tables:
            return False
        if "meta" not in tables:
            raise self._foreign(f"an SQLite database with tables {sorted(tables)}")
        try:
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise self._foreign(f"a 'meta' table of another layout ({exc})") from None
        if meta.get("package") != PACKAGE:
            raise self._foreign(f"meta package={meta.get('package')!r}")
        version = meta.get("schema_version")
        if version not in READABLE_VERSIONS:
            readable = ", ".join(map(str, READABLE_VERSIONS))
            raise InputError(
                f"run store {str(self.path)!r} has schema_version={version!r}, but this version of "
                f"{PACKAGE} reads schema_version={readable} only; it was left unchanged. "
                f"Use the {PACKAGE} version that wrote it, or choose another output folder."
            )
        if tables != READABLE_VERSIONS[version]:
            raise self._foreign(f"an SQLite database with tables {sorted(tables)}")
        if version != SCHEMA_VERSION and not self.read_only:
            raise OlderSchema(
                f"run store {str(self.path)!r} has schema_version={version}, written by an earlier "
                f"{PACKAGE} (records only, no per-example losses or adapters); it opens read-only "
                f"('infobound report DIR' reads it) and is never written or migrated: it was left "
                f"unchanged. Run validate into a new --out folder to write schema_version={SCHEMA_VERSION}"
            )
        self.schema_version = version
        return True

    def _validate_read_only(self) -> None:
        """Validate an existing file through a read-only connection, which can never write it.

        A read-write connection would also leave a foreign file's bytes alone when reading, except
        that closing it checkpoints a foreign WAL file into the database. Where a read-only
        connection cannot read (a hot rollback journal from a killed writer, no ``-shm`` file and a
        read-only folder), validation falls back to the read-write connection, as SQLite recovery does.
        """
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        uri = self.path.resolve().as_uri() + "?mode=ro"
        # A read-only connection to a WAL database leaves -wal/-shm files behind; remove the ones it
        # made (an empty -wal only) when the file is refused, so that a refusal leaves no trace.
        siblings = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")]
        made = [p for p in siblings if not p.exists()]
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError:
            return
        try:
            conn.execute("BEGIN")
            self._validate(conn)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if not _not_about_content(exc):
                raise
        except InputError:
            conn.close()
            for path in made:
                if path.exists() and (path.name.endswith("-shm") or path.stat().st_size == 0):
                    path.unlink(missing_ok=True)
            raise
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        self._check_header()
        if self.read_only:
            return self._open_read_only()
        self._validate_read_only()
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Validate inside a read transaction, before any statement that could write the file.
            conn.execute("BEGIN")
            try:
                ready = self._validate(conn)
            finally:
                conn.execute("COMMIT")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = FULL")
            if not ready:
                # Several processes may create the store at once: the write lock serialises them and
                # the re-check lets exactly one of them write the schema.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not self._validate(conn):
                        for statement in _SCHEMA:
                            conn.execute(statement)
                        conn.executemany(
                            "INSERT INTO meta (name, value) VALUES (?, ?)",
                            [("package", PACKAGE), ("schema_version", SCHEMA_VERSION)],
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that can never write the database: ``mode=ro``, or ``immutable=1`` where the
        folder is read-only and SQLite cannot make the shared-memory file a WAL reader needs. (A WAL
        reader may leave empty ``-wal``/``-shm`` files beside the database.)"""
        base = self.path.resolve().as_uri()
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(base + query, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("BEGIN")
                ready = self._validate(conn)
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                conn.close()
                if _not_about_content(exc):
                    continue
                raise self._damaged(exc) from None
            except BaseException:
                conn.close()
                raise
            if not ready:
                conn.close()
                raise InputError(f"run store {str(self.path)!r} is empty: it holds no schema and no records")
            return conn
        raise InputError(f"run store {str(self.path)!r} cannot be opened for reading (check its permissions)")

    def _damaged(self, exc: Exception) -> InputError:
        return InputError(
            f"run store {str(self.path)!r} is damaged (SQLite: {exc}); it was left unchanged. The "
            f"sqlite3 shell's '.recover' command can copy the readable records into a new file; or "
            f"choose another output folder and rerun."
        )

    @staticmethod
    def _use_wal(conn: sqlite3.Connection) -> None:
        """Switch to the WAL journal (persistent in the file); retry while others hold locks.

        SQLite does not call the busy handler for this switch, which needs the database to itself,
        so several processes opening a fresh store at once retry here until ``BUSY_TIMEOUT_S``.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"run store {str(self.path)!r} is closed")
        if os.getpid() != self._pid:  # forked child: never use the parent's connection
            self._pid = os.getpid()
            self._conn = self._open()
        return self._conn

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            if os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{len(self)} records"
        return f"RunStore({str(self.folder)!r}, {state})"

    # -- queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def has(self, key: str) -> bool:
        """Whether a record with config key ``key`` is stored."""
        return self._db.execute("SELECT 1 FROM records WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        """All stored config keys."""
        return {row[0] for row in self._db.execute("SELECT key FROM records")}

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` not yet stored, in the given order, each once."""
        present = self.keys()
        out: list[str] = []
        seen: set[str] = set()
        for key in keys:
            if key not in present and key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def get(self, key: str) -> dict | None:
        """The record stored under ``key`` (with a ``"key"`` field), or None."""
        row = self._db.execute("SELECT seq, key, record FROM records WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[2])
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            raise InputError(f"run store {str(self.path)!r}: the record in row {row[0]} (key {key[:12]}...) "
                             "is damaged (not a valid JSON object); the other records are unaffected")
        return {_KEY_FIELD: row[1], **value}

    def config(self, key: str) -> dict | None:
        """The config stored under ``key``, or None."""
        row = self._db.execute("SELECT config FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def records(self, where: Mapping | None = None) -> list[dict]:
        """All records in insertion order, each with its ``"key"``; optionally filtered.

        ``where`` maps field names to wanted values (a list/tuple/set means any of them); a record
        matches when it has every field with a wanted value. ``True`` does not match ``1``.
        """
        if where is not None and not isinstance(where, Mapping):
            raise InputError(f"where must be a mapping of field to value or None, got {where!r}")
        records, damaged = self._read_records()
        if damaged:
            total = len(records) + len(damaged)
            raise InputError(
                f"run store {str(self.path)!r} has {len(damaged)} damaged record(s) (rows "
                f"{', '.join(map(str, damaged[:10]))}{', ...' if len(damaged) > 10 else ''}: not valid "
                f"JSON objects); {len(records)} of {total} are readable and were left unchanged. "
                f"'infobound report DIR --skip-damaged' reports the readable ones; rerun into another "
                f"--out folder to retrain the damaged ones"
            )
        return [rec for rec in records
                if where is None or all(f in rec and _matches(rec[f], w) for f, w in where.items())]

    def readable_records(self) -> tuple[list[dict], list[int]]:
        """The records that decode (each with its ``"key"``), and the row numbers of those that do not."""
        return self._read_records()

    def _read_records(self) -> tuple[list[dict], list[int]]:
        try:
            rows = self._db.execute("SELECT seq, key, record FROM records ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as exc:
            if _not_about_content(exc):
                raise
            raise self._damaged(exc) from None
        out, damaged = [], []
        for seq, key, text in rows:
            try:
                value = json.loads(text)
            except (TypeError, ValueError):
                value = None
            if not isinstance(value, dict):
                damaged.append(seq)
                continue
            out.append({_KEY_FIELD: key, **value})
        return out, damaged

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def _encode(key, record: Mapping, config: Mapping) -> tuple[str, str, str, str]:
        if not isinstance(key, str):
            raise InputError(f"key must be a str from config_key(config), got {key!r}")
        config_text = canonical_config_json(config)
        expected = hashlib.sha256(config_text.encode("ascii")).hexdigest()
        if key != expected:
            raise InputError(f"key must equal config_key(config) = {expected!r}, got {key!r}")
        created_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        return key, _record_json(record), config_text, created_at

    _INSERT = "INSERT OR IGNORE INTO records (key, record, config, created_at) VALUES (?, ?, ?, ?)"

    def put(self, key: str, record: Mapping, config: Mapping) -> bool:
        """Store ``record`` under ``key`` in one transaction; False (row untouched) if ``key`` exists."""
        return self.put_many([(key, record, config)]) == 1

    def put_many(self, items: Iterable[tuple]) -> int:
        """Store ``(key, record, config)`` or ``(key, record, config, arrays)`` items in one
        transaction: all of them or none.

        ``arrays`` maps names to numeric numpy arrays (int, uint, float or bool) stored beside the
        record and read back by :meth:`arrays`. Keys already stored (or repeated within ``items``)
        keep their first row and arrays. Any error, e.g. an item that does not serialise, rolls the
        whole batch back. Returns the number of records newly inserted.
        """
        if self.read_only:
            raise InputError(f"run store {str(self.path)!r} was opened read_only=True; it cannot be written")
        db = self._db
        inserted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                if not (isinstance(item, tuple) and len(item) in (3, 4)):
                    raise InputError(f"items must be (key, record, config[, arrays]) tuples, got {item!r}")
                key, record, config = item[:3]
                arrays = self._encode_arrays(item[3] if len(item) == 4 else None)
                added = db.execute(self._INSERT, self._encode(key, record, config)).rowcount
                if added:
                    db.executemany("INSERT INTO arrays (key, name, dtype, shape, data) VALUES (?, ?, ?, ?, ?)",
                                   [(key, *row) for row in arrays])
                inserted += added
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return inserted

    @staticmethod
    def _encode_arrays(arrays) -> list[tuple[str, str, str, bytes]]:
        if arrays is None:
            return []
        if not isinstance(arrays, Mapping):
            raise InputError(f"arrays must be a mapping of names to numpy arrays, got {type(arrays).__name__}")
        rows = []
        for name, value in arrays.items():
            if not isinstance(name, str) or not name:
                raise InputError(f"arrays keys must be non-empty strings, got {name!r}")
            dtype = getattr(value, "dtype", None)
            if dtype is None or not hasattr(value, "shape"):
                raise InputError(f"arrays[{name!r}] must be a numpy array, got {type(value).__name__}")
            little = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
            if little.str not in _ARRAY_DTYPES:
                raise InputError(f"arrays[{name!r}] must have a numeric dtype (int, uint, float, bool), "
                                 f"got {dtype}")
            data = value.astype(little, copy=False)
            rows.append((name, little.str, json.dumps(list(map(int, value.shape))),
                         memoryview(data.copy(order="C")).tobytes()))
        return rows

    @property
    def has_arrays(self) -> bool:
        """Whether this store's schema holds arrays (schema 2 and later)."""
        return "arrays" in READABLE_VERSIONS[self.schema_version]

    def arrays(self, key: str, names: Iterable[str] | None = None) -> dict:
        """The arrays stored with the record ``key`` (name -> numpy array; only ``names`` if given).

        A store of schema 1 holds none: ``InputError`` saying so.
        """
        return self.arrays_many([key], names).get(key, {})

    def arrays_many(self, keys: Iterable[str], names: Iterable[str] | None = None) -> dict:
        """``{key: {name: array}}`` for the given record keys (keys without arrays are left out)."""
        import numpy as np

        if not self.has_arrays:
            raise InputError(
                f"run store {str(self.path)!r} has schema_version={self.schema_version}: it holds records "
                f"only, no per-example losses or trained adapters (written by an earlier {PACKAGE}); "
                f"rerun validate into a new --out folder to record them")
        wanted = None if names is None else set(names)
        keys = list(keys)
        out: dict = {}
        for lo in range(0, len(keys), 500):  # SQLite's variable limit
            chunk = keys[lo:lo + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, name, dtype, shape, data FROM arrays WHERE key IN ({marks}) "
                                    "ORDER BY rowid",
                                    chunk).fetchall()
            for key, name, dtype, shape, data in rows:
                if wanted is not None and name not in wanted:
                    continue
                try:
                    array = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))
                except (TypeError, ValueError) as exc:
                    raise InputError(f"run store {str(self.path)!r}: array {name!r} of record {key[:12]}... "
                                     f"is damaged ({exc}); the records are unaffected") from None
                out.setdefault(key, {})[name] = array
        return out

    # -- export -------------------------------------------------------------------------------

    def export_csv(self, path) -> Path:
        """Write all records to a CSV file atomically; columns ``key`` then fields in first-seen order.

        Missing fields and ``None`` are empty cells; floats are written exactly (``repr``). The file
        is written to a temporary file in the same folder and moved into place with ``os.replace``.
        """
        target = Path(path)
        if not target.parent.is_dir():
            raise InputError(f"path {str(target)!r}: folder {str(target.parent)!r} does not exist")
        rows = self.records()
        columns: dict[str, None] = {_KEY_FIELD: None}
        for rec in rows:
            columns.update(dict.fromkeys(rec))
        with atomic_output(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="")
            writer.writeheader()
            for rec in rows:
                writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                                 for k, v in rec.items()})
        return target


def open_for_reading(folder) -> RunStore:
    """An existing store for reading: read-write for this schema (leaves no extra files beside it),
    read-only for an earlier one, which is never written."""
    try:
        return RunStore(folder, create=False)
    except OlderSchema:
        return RunStore(folder, create=False, read_only=True)
