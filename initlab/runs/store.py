"""The run store: one SQLite database per output folder that remembers every run, so nothing is lost.

A *cell* is one run: one init spec x one seed x the rest of the configuration. Its identity is the
SHA-256 of its canonical JSON (sorted keys, no spaces), so "the same run" means "the same settings",
whatever order a grid lists them in. The ``runs`` table holds each cell's config, its status, the
runs.csv row it produced and where its record files are:

    queued -> running -> done | diverged        (final: a resume never trains them again)
                      -> failed | interrupted   (a resume trains them again)

Why it survives ``kill -9`` at any moment:

- Journal in WAL mode with ``synchronous=FULL``: a committed transaction is on disk before COMMIT
  returns, and a process killed mid-transaction leaves no trace of it.
- Every write is one transaction opened with ``BEGIN IMMEDIATE``, which takes the write lock up front
  (two writers never deadlock upgrading a read lock), and ``busy_timeout`` makes a second process wait
  for the lock instead of failing: local sweep workers all write to one store.
- A run's record files are written atomically (temp file, fsync, rename) *before* the transaction
  that marks it done, so "done" implies complete files. A worker may only finish the runs it claimed
  (``claim`` token), so a stale worker can never overwrite a newer attempt's result.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from initlab.files import atomic_write_bytes, read_csv, rows_to_csv

STORE_NAME = "store.sqlite"
RECORDS_DIR = "records"
RECORD_TABLES = ("curves", "layers", "histograms")        # one CSV file each per run
STATUSES = ("queued", "running", "done", "diverged", "failed", "interrupted")
FINAL = ("done", "diverged")                               # never trained again by a resume
HAS_RECORDS = ("done", "diverged", "interrupted")          # rows that go into the report's tables
BUSY_TIMEOUT_MS = 120_000   # a writer waits up to 2 min for the lock; a transaction here takes ~ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    hash      TEXT PRIMARY KEY,       -- sha256 of config
    config    TEXT NOT NULL,          -- canonical JSON of the cell's settings (init and seed included)
    init      TEXT NOT NULL,
    seed      INTEGER NOT NULL,
    grp       TEXT NOT NULL,          -- sha256 of the config without init and seed: one stack's cells
    position  INTEGER,                -- order in the current plan (NULL: not in it, kept, never deleted)
    status    TEXT NOT NULL DEFAULT 'queued'
              CHECK (status IN ('queued', 'running', 'done', 'diverged', 'failed', 'interrupted')),
    claim     TEXT,                   -- who trains it: 'host:pid:session:task'
    attempts  INTEGER NOT NULL DEFAULT 0,
    row       TEXT,                   -- its runs.csv row as JSON, once trained
    records   TEXT,                   -- folder of its record files, relative to the output folder
    error     TEXT,                   -- one line, for failed runs
    updated   REAL NOT NULL           -- unix time of the last change
);
CREATE INDEX IF NOT EXISTS runs_position ON runs(position);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def canonical_json(obj) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal settings give equal text (and equal hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def store_path(out: Path) -> Path:
    return Path(out) / STORE_NAME


def exists(out: Path) -> bool:
    return store_path(out).exists()


class StoreUnreadable(OSError):
    """The store of a folder cannot be opened for reading (damaged, or not a store)."""


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes: ``mode=ro``, or, where that fails because a WAL store's
    shared-memory file cannot be created (a read-only folder or mount), ``immutable=1`` (no locks: the
    folder is read-only, so nobody writes it)."""
    uri = Path(path).resolve().as_uri()
    if not Path(path).exists():
        raise StoreUnreadable(f"{path}: no run store there")
    for query in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                             isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("SELECT COUNT(*) FROM runs").fetchone()
            return db
        except sqlite3.OperationalError as e:
            db.close()
            error = e
        except sqlite3.DatabaseError as e:
            db.close()
            raise StoreUnreadable(f"{path}: {e}") from None
    raise StoreUnreadable(f"{path}: {error}")


def owner_alive(claim: Optional[str]) -> Optional[bool]:
    """Whether the process that claimed a run ('host:pid:...') still lives: None when it ran on another
    host (this machine cannot tell)."""
    host, _, rest = (claim or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:           # alive, another user's
        return True
    return True


def shown_status(run: dict) -> str:
    """A run's status as a person should read it: 'stale' for a run marked running whose process died
    (killed, or the machine restarted): a resume trains it again."""
    if run["status"] == "running" and owner_alive(run.get("claim")) is False:
        return "stale"
    return run["status"]


def writable(folder: Path) -> bool:
    """True when a file can be created in ``folder`` (a read-only mount or missing rights: False)."""
    probe = Path(folder) / f".initlab-write-test-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
        return True
    except OSError:
        return False


class Store:
    """A connection to ``DIR/store.sqlite`` (``readonly``: to read a folder that may not be writable,
    e.g. on a read-only mount). One per process: SQLite's connections are not fork-safe,
    nor is a fork while one is open (the child inherits SQLite's record of the parent's locks and
    holds none of its own), so a process that forks workers wraps the fork in :meth:`detached`."""
    def __init__(self, out: Path, readonly: bool = False) -> None:
        self.out = Path(out)
        self.path = store_path(self.out)
        self.readonly = readonly
        if readonly:
            self._connect()
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._connect()
        with self.transaction() as db:   # (executescript would COMMIT on its own)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def _connect(self) -> None:
        if self.readonly:
            self.db = _connect_readonly(self.path)
            return
        # isolation_level=None: no implicit transactions; every write below opens its own
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")

    @contextlib.contextmanager
    def detached(self) -> Iterator[None]:
        """The connection closed inside the block and opened again after it: fork a worker there."""
        self.db.close()
        try:
            yield
        finally:
            self._connect()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta: small JSON values about the whole folder (the plan, the environment, ...) -------------

    def set_meta(self, **values) -> None:
        with self.transaction() as db:
            for key, value in values.items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           (key, json.dumps(value)))

    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def meta_with_prefix(self, prefix: str) -> Dict[str, object]:
        """{key without the prefix: value} of the meta entries whose key starts with ``prefix``."""
        rows = self.db.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                               (len(prefix), prefix))
        return {r["key"][len(prefix):]: json.loads(r["value"]) for r in rows}

    # -- the plan ------------------------------------------------------------------------------------

    def plan(self, cells: Sequence[dict], **meta) -> Dict[str, int]:
        """Make ``cells`` (dicts with hash, config, init, seed, grp) the current plan, in this order,
        and store ``meta`` with it, in one transaction. Cells already stored keep their status and
        results; cells of an earlier plan that are not in this one stay stored with position NULL.
        Runs left running, failed or interrupted by an earlier process go back to queued. Returns
        {status: count} over the plan."""
        now = time.time()
        with self.transaction() as db:
            for key, value in meta.items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           (key, json.dumps(value)))
            db.execute("UPDATE runs SET position = NULL")
            for k, c in enumerate(cells):
                db.execute("INSERT OR IGNORE INTO runs (hash, config, init, seed, grp, updated) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (c["hash"], c["config"], c["init"], c["seed"], c["grp"], now))
                db.execute("UPDATE runs SET position = ? WHERE hash = ?", (k, c["hash"]))
            db.execute("UPDATE runs SET status = 'queued', claim = NULL, updated = ? "
                       "WHERE position IS NOT NULL AND status IN ('running', 'failed', 'interrupted')",
                       (now,))
        return self.counts()

    def counts(self, plan_only: bool = True) -> Dict[str, int]:
        where = "WHERE position IS NOT NULL" if plan_only else ""
        rows = self.db.execute(f"SELECT status, COUNT(*) AS n FROM runs {where} GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    def runs(self, plan_only: bool = True) -> List[dict]:
        """Every stored run as a dict (``row`` parsed from JSON), in plan order; off-plan runs last."""
        where = "WHERE position IS NOT NULL" if plan_only else ""
        out = []
        for r in self.db.execute(f"SELECT * FROM runs {where} "
                                 "ORDER BY position IS NULL, position, updated"):
            d = dict(r)
            d["row"] = json.loads(d["row"]) if d["row"] else None
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    # -- one attempt at some runs --------------------------------------------------------------------

    def claim(self, hashes: Iterable[str], token: str) -> int:
        """Mark runs as running under ``token``; returns how many were claimed (final ones are not)."""
        hashes = list(hashes)
        with self.transaction() as db:
            n = 0
            for h in hashes:
                n += db.execute("UPDATE runs SET status = 'running', claim = ?, attempts = attempts + 1, "
                                "error = NULL, updated = ? WHERE hash = ? AND status NOT IN ('done', 'diverged')",
                                (token, time.time(), h)).rowcount
        return n

    def finish(self, results: Sequence[Tuple[str, str, dict, str]], token: str) -> int:
        """Record (hash, status, runs.csv row, records folder) for runs claimed under ``token``, all in
        one transaction; runs claimed since by someone else are left alone. Returns how many changed."""
        n = 0
        with self.transaction() as db:
            for h, status, row, records in results:
                if status not in STATUSES:
                    raise ValueError(f"unknown status {status!r}")
                n += db.execute("UPDATE runs SET status = ?, row = ?, records = ?, error = NULL, "
                                "updated = ? WHERE hash = ? AND claim = ? AND status = 'running'",
                                (status, json.dumps(row, allow_nan=True), records, time.time(), h,
                                 token)).rowcount
        return n

    def fail(self, hashes: Iterable[str], token: str, error: str) -> int:
        with self.transaction() as db:
            return sum(db.execute("UPDATE runs SET status = 'failed', error = ?, updated = ? "
                                  "WHERE hash = ? AND claim = ? AND status = 'running'",
                                  (error, time.time(), h, token)).rowcount for h in hashes)

    def release_hashes(self, hashes: Iterable[str], token: str) -> int:
        """Back to queued: these runs, if still running under ``token``."""
        with self.transaction() as db:
            return sum(db.execute("UPDATE runs SET status = 'queued', claim = NULL, updated = ? "
                                  "WHERE hash = ? AND claim = ? AND status = 'running'",
                                  (time.time(), h, token)).rowcount for h in hashes)

    def release(self, token_prefix: str) -> int:
        """Back to queued: the runs still running under claims starting with ``token_prefix`` (the
        runs of a sweep stopped with Ctrl-C)."""
        with self.transaction() as db:
            return db.execute("UPDATE runs SET status = 'queued', claim = NULL, updated = ? "
                              "WHERE status = 'running' AND substr(claim, 1, ?) = ?",
                              (time.time(), len(token_prefix), token_prefix)).rowcount

    def requeue_corrupt(self, out: Path) -> List[str]:
        """Runs marked finished whose record files fail their checksums (:func:`verify_records`): each
        is set to 'failed' with the reason as its error, so a resume trains it again. Returns one line
        per such run."""
        bad = []
        for r in self.runs():
            if r["status"] in HAS_RECORDS and r["records"]:
                problem = verify_records(out, r["records"])
                if problem:
                    bad.append({**r, "problem": problem})
        if bad:
            with self.transaction() as db:
                for r in bad:
                    db.execute("UPDATE runs SET status = 'failed', claim = NULL, error = ?, updated = ? "
                               "WHERE hash = ?", (f"record files corrupt: {r['problem']}", time.time(),
                                                  r["hash"]))
        return [f"run {r['init']} seed {r['seed']} ({r['hash'][:8]}): record files corrupt ({r['problem']}); "
                f"--resume trains it again" for r in bad]

    def integrity(self) -> str:
        """'ok', or SQLite's description of the damage."""
        return "; ".join(r[0] for r in self.db.execute("PRAGMA integrity_check"))


# --------------------------------------------------------------------------------------------------
# Record files: DIR/records/<hash>/{curves,layers,histograms}.csv, one set per run
# --------------------------------------------------------------------------------------------------

def durable_write(path: Path, data: bytes) -> None:
    """An atomic write (temp file, fsync, rename: :func:`initlab.files.atomic_write_bytes`), then an
    fsync of the folder: after this returns the file is complete on disk, and at no moment does
    ``path`` hold half a file."""
    atomic_write_bytes(path, data)
    _fsync_dir(Path(path).parent)


def durable_write_text(path: Path, text: str) -> None:
    """:func:`durable_write` of ``text``, UTF-8 (the bytes :func:`initlab.files.atomic_write_text` writes)."""
    durable_write(path, text.encode())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:          # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


CHECKSUMS = "SHA256SUMS"    # in each record folder, written last: "<sha256>  <file>" per file
WEIGHTS = "weights.pt"      # a run's trained weights, kept when its config asks (StudyConfig.keep_weights)


def write_records(out: Path, run_hash: str, tables: Dict[str, List[dict]],
                  blobs: Optional[Dict[str, bytes]] = None) -> str:
    """Write one run's record tables (and ``blobs``: {file name: bytes}, e.g. its weights) and their
    checksums; returns their folder relative to ``out``."""
    rel = f"{RECORDS_DIR}/{run_hash}"
    folder = Path(out) / rel
    folder.mkdir(parents=True, exist_ok=True)
    sums = []
    files_ = [(f"{name}.csv", rows_to_csv(tables.get(name, [])).encode()) for name in RECORD_TABLES]
    for name, data in files_ + list((blobs or {}).items()):
        durable_write(folder / name, data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    durable_write_text(folder / CHECKSUMS, "".join(sums))
    return rel


def verify_records(out: Path, rel: str) -> Optional[str]:
    """None when a run's record files (every table, and every other file its checksums list) match
    their checksums (or predate them), else what is wrong, in a few words: a missing file, a checksum
    that differs, an unreadable checksum file."""
    folder = Path(out) / rel
    try:
        listed = (folder / CHECKSUMS).read_text()
    except FileNotFoundError:
        return None if folder.is_dir() else "record folder missing"
    except (OSError, UnicodeDecodeError) as e:
        return f"{CHECKSUMS} unreadable ({e})"
    expected = {}
    for line in listed.splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    for name in RECORD_TABLES:
        if f"{name}.csv" not in expected:
            return f"{CHECKSUMS} does not list {name}.csv"
    for name, digest in expected.items():
        try:
            data = (folder / name).read_bytes()
        except OSError:
            return f"{name} missing"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"{name} differs from its checksum"
    return None


def read_records(out: Path, rel: str) -> Dict[str, List[dict]]:
    folder = Path(out) / rel
    tables = {}
    for name in RECORD_TABLES:
        p = folder / f"{name}.csv"
        tables[name] = read_csv(p) if p.exists() and p.stat().st_size else []
    return tables
