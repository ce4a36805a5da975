"""Clinicians' reviews of captions: checked and stored in SQLite (summarised by `cxrcap.review_summary`).

A review is one person's judgement of one caption: `correct`, `partly` (correct) or `wrong`,
optionally the findings it missed or invented and a comment. The app, the `/review` API and the
`reviews` CLI all go through `ReviewStore`.

Storage (`ReviewStore`): the standard library's sqlite3, one file (`default_database()`), WAL
journal (readers never block the writer), a schema version in `PRAGMA user_version` raised by
`MIGRATIONS`, every write one `BEGIN IMMEDIATE` transaction with a busy timeout (concurrent
writers queue instead of failing with "database is locked"). A review sent with an idempotency
key (the `/review` API's optional submission id) is stored once, however often it is sent. An
image is known by the sha256 of its file only: no pixels, no DICOM fields. Text is stored as
typed (HTML included): whoever shows it escapes it.

Optional hub copy (`hub_mirror`): with `CXRCAP_REVIEWS_REPO=owner/name`, each stored review is
also appended as a JSON line to a folder that huggingface_hub's `CommitScheduler` uploads to a
private dataset every `CXRCAP_REVIEWS_EVERY` minutes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import metrics
from .variants import VARIANTS, get_variant

log = logging.getLogger(__name__)

RATINGS = ("correct", "partly", "wrong")
RATING_LABELS = {"correct": "correct", "partly": "partly correct", "wrong": "wrong"}

MAX_COMMENT_CHARS = 2_000  # longer comments are cut (with a notice), not refused
MAX_TEXT_CHARS = 5_000  # caption and ground truth; the app cuts ground truths to the same length
MAX_NAME_CHARS = 100  # reviewer name, role, example file name, one finding
MAX_FINDINGS = 30  # per list (missed, invented)
BUSY_SECONDS = 30.0  # how long a writer waits for another one before giving up

# Schema history: MIGRATIONS[i] takes a database from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,                 -- UTC, ISO 8601
        reviewer TEXT NOT NULL DEFAULT '',        -- as typed, or the Space's logged-in user
        role TEXT NOT NULL DEFAULT '',
        variant TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',          -- where the variant's weights came from
        decoding TEXT NOT NULL DEFAULT '',
        caption TEXT NOT NULL,
        ground_truth TEXT NOT NULL DEFAULT '',
        image_sha256 TEXT NOT NULL CHECK (length(image_sha256) = 64),
        example TEXT NOT NULL DEFAULT '',         -- the gallery example's file name, if it was one
        rating TEXT NOT NULL CHECK (rating IN ('correct', 'partly', 'wrong')),
        missed TEXT NOT NULL DEFAULT '[]',        -- JSON list of findings
        invented TEXT NOT NULL DEFAULT '[]',      -- JSON list of findings
        comment TEXT NOT NULL DEFAULT '',
        scores TEXT NOT NULL DEFAULT '{}',        -- JSON: the caption's metrics against ground_truth
        submission TEXT                           -- one "Submit reviews" of the app: sent once only
    );
    CREATE UNIQUE INDEX reviews_once_per_submission ON reviews (submission, variant) WHERE submission IS NOT NULL;
    CREATE INDEX reviews_by_reviewer ON reviews (reviewer);
    """,
    """
    -- the /review API's optional submission id: a retried call stores once and answers with the first id
    ALTER TABLE reviews ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX reviews_once_per_key ON reviews (idempotency_key) WHERE idempotency_key IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMNS = (
    "id", "created_at", "reviewer", "role", "variant", "source", "decoding", "caption", "ground_truth",
    "image_sha256", "example", "rating", "missed", "invented", "comment", "scores", "submission", "idempotency_key",
)  # fmt: skip
_JSON_COLUMNS = ("missed", "invented", "scores")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ReviewError(ValueError):
    """A review that cannot be stored as given; the message says why, for the person who sent it."""


def default_database() -> Path:
    """`$CXRCAP_REVIEWS`; on a Space with persistent storage `/data/reviews.sqlite`; else
    `data/reviews.sqlite` under the working directory (the app's data folder)."""
    configured = os.environ.get("CXRCAP_REVIEWS", "").strip()
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("SPACE_ID") and os.access("/data", os.W_OK):
        return Path("/data/reviews.sqlite")  # Spaces mount persistent storage there; elsewhere it vanishes on restart
    return Path("data") / "reviews.sqlite"


@dataclass(frozen=True)
class Review:
    """One checked review, ready to store (make it with `make_review`)."""

    variant: str
    caption: str
    rating: str
    image_sha256: str
    ground_truth: str = ""
    example: str = ""
    source: str = ""
    decoding: str = ""
    missed: tuple[str, ...] = ()
    invented: tuple[str, ...] = ()
    comment: str = ""
    reviewer: str = ""
    role: str = ""
    scores: dict[str, float | None] = field(default_factory=dict)  # finding_f1 None: no finding named
    submission: str | None = None
    idempotency_key: str | None = None  # a retried API call with it is stored once (`ReviewStore.add`)


def make_review(
    *,
    variant,
    caption,
    rating,
    image_sha256,
    ground_truth=None,
    example=None,
    source=None,
    decoding=None,
    missed=(),
    invented=(),
    comment=None,
    reviewer=None,
    role=None,
    submission=None,
    idempotency_key=None,
) -> tuple[Review, list[str]]:
    """Check and tidy what a reviewer sent; returns the review and notices for them (e.g. a cut
    comment). Raises `ReviewError` for anything that cannot be stored as meant."""
    notices = []
    variant = _text("variant", variant).strip()
    if variant not in VARIANTS:
        raise ReviewError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    rating = _text("rating", rating).strip().lower()
    if rating not in RATINGS:
        raise ReviewError(f"Rating must be one of {', '.join(RATINGS)}, not {rating!r}.")
    image_sha256 = _text("image_sha256", image_sha256).strip().lower()
    if not _SHA256.fullmatch(image_sha256):
        raise ReviewError("The image is missing: a review is about one X-ray (known by its sha256).")
    caption, ground_truth = _text("caption", caption), _text("ground truth", ground_truth).strip()
    if not caption.strip():
        raise ReviewError("The caption is empty: send the caption the review is about.")
    for name, value in (("caption", caption), ("ground truth", ground_truth)):
        if len(value) > MAX_TEXT_CHARS:
            raise ReviewError(f"The {name} has {len(value):,} characters; at most {MAX_TEXT_CHARS:,} are stored.")
    comment = _text("comment", comment).strip()
    if len(comment) > MAX_COMMENT_CHARS:
        notices.append(f"The comment had {len(comment):,} characters; its first {MAX_COMMENT_CHARS:,} are stored.")
        comment = comment[:MAX_COMMENT_CHARS]
    short = {
        name: _text(name, value).strip()
        for name, value in (("reviewer name", reviewer), ("role", role), ("source", source), ("decoding", decoding),
                        ("submission id", idempotency_key))
    }
    for name, value in short.items():
        if len(value) > MAX_NAME_CHARS * (5 if name in ("source", "decoding") else 1):
            raise ReviewError(f"The {name} is too long ({len(value):,} characters).")
    example = Path(_text("example", example).strip()).name  # a file name, never a server path
    scores = metrics.score(caption, ground_truth) if metrics.normalise(ground_truth) else {}
    review = Review(
        variant=get_variant(variant).id, caption=caption, rating=rating, image_sha256=image_sha256,
        ground_truth=ground_truth, example=example[:MAX_NAME_CHARS], source=short["source"],
        decoding=short["decoding"], missed=_findings("missed", missed), invented=_findings("invented", invented),
        comment=comment, reviewer=short["reviewer name"], role=short["role"], scores=scores,
        submission=None if submission is None else _text("submission", submission),
        idempotency_key=short["submission id"] or None,
    )  # fmt: skip
    return review, notices


def _text(name: str, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReviewError(f"The {name} must be text, not {type(value).__name__}.")
    return value.replace("\x00", "")  # NUL ends C strings: keep it out of the database and of CSVs


def _findings(name: str, values) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ReviewError(f"The {name} findings must be a list of names.")
    names = tuple(dict.fromkeys(_text(f"{name} finding", value).strip() for value in values if value))
    if len(names) > MAX_FINDINGS or any(len(value) > MAX_NAME_CHARS for value in names):
        raise ReviewError(f"At most {MAX_FINDINGS} {name} findings of up to {MAX_NAME_CHARS} characters each.")
    return names


class ReviewStore:
    """The reviews database. Safe to share between threads and processes: each call opens its own
    connection, and writers wait for each other (up to `BUSY_SECONDS`)."""

    def __init__(self, path: str | os.PathLike, mirror: JsonlMirror | None = None):
        self.path = Path(path)
        self.mirror = mirror
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as connection:
            self._refuse_foreign(connection)  # before anything is written into someone else's file
            _use_wal(connection, self.path)
            self._migrate(connection)

    def _refuse_foreign(self, connection: sqlite3.Connection) -> None:
        """Reviews live in a database of their own: a file with tables the migrations did not make
        (or tables at all before the first migration) belongs to something else."""
        connection.execute("BEGIN")  # one snapshot of both: another process may be migrating the file now
        try:
            version, tables = connection.execute("PRAGMA user_version").fetchone()[0], _tables(connection)
        finally:
            connection.execute("COMMIT")
        if version > SCHEMA_VERSION:
            return  # a newer cxrcap's: `_migrate` says so
        foreign = tables - (_our_tables() if version else set())
        if foreign:
            raise ReviewError(
                f"{self.path.name} holds tables that are not cxrcap's reviews: {', '.join(sorted(foreign))}. "
                "Keep the reviews in a database of their own: name a new file (--db, or CXRCAP_REVIEWS)."
            )

    def _migrate(self, connection: sqlite3.Connection) -> None:
        # IMMEDIATE: two processes opening a new file: one migrates, the other waits
        with _immediate(connection):
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ReviewError(
                    f"The reviews database {self.path.name} has schema version {version}, newer than this "
                    f"cxrcap's {SCHEMA_VERSION}: update cxrcap to use it."
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {step + 1}")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)  # we BEGIN ourselves
        try:
            connection.execute("PRAGMA synchronous = FULL")  # a review acknowledged is on disk, even on power loss
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock at BEGIN, so a busy database means
        waiting here, never the mid-transaction lock upgrade that fails at once."""
        with self._connection() as connection, _immediate(connection):
            yield connection

    def add(self, reviews: Review | Sequence[Review]) -> list[int]:
        """Store reviews in one transaction (all or none); returns their ids. A submission sent
        twice is refused whole; a review whose idempotency key is stored already (a retried API
        call) is not stored again: the id it got the first time is returned."""
        reviews = [reviews] if isinstance(reviews, Review) else list(reviews)
        created_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        placeholders = ", ".join("?" * (len(COLUMNS) - 1))
        ids, added = [], []
        try:
            with self._transaction() as connection:
                for review in reviews:
                    review_id = _stored_before(connection, review)
                    if review_id is None:
                        review_id = connection.execute(
                            f"INSERT INTO reviews ({', '.join(COLUMNS[1:])}) VALUES ({placeholders})",
                            _values(review, created_at),
                        ).lastrowid
                        added.append(review_id)
                    ids.append(review_id)
        except sqlite3.IntegrityError:
            raise ReviewError("These reviews were submitted already; each image's reviews are sent once.") from None
        if self.mirror is not None and added:
            self.mirror.append(self.rows(ids=added))
        return ids

    def rows(self, ids: Sequence[int] | None = None) -> list[dict]:
        """Reviews as dicts (missed/invented as lists, scores as a dict), oldest first."""
        query = f"SELECT {', '.join(COLUMNS)} FROM reviews"
        if ids is not None:
            query += f" WHERE id IN ({', '.join('?' * len(ids))})"
        with self._connection() as connection:
            found = connection.execute(query + " ORDER BY id", list(ids or ())).fetchall()
        return [_row(values) for values in found]

    def version(self) -> tuple[int, int]:
        """(number of reviews, highest id): changes whenever reviews are added or deleted."""
        with self._connection() as connection:
            count, highest = connection.execute("SELECT count(*), coalesce(max(id), 0) FROM reviews").fetchone()
        return count, highest

    def delete_reviewer(self, reviewer: str) -> int:
        """Delete every review by this reviewer (exact name as stored); returns how many."""
        with self._transaction() as connection:
            return connection.execute("DELETE FROM reviews WHERE reviewer = ?", (reviewer,)).rowcount

    def integrity_check(self) -> str:
        with self._connection() as connection:
            return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One `BEGIN IMMEDIATE` transaction: committed, or rolled back on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        # After some errors (a full disk, an interrupt) SQLite has rolled back already: a second
        # ROLLBACK would fail and be raised instead of the error that says what went wrong.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _use_wal(connection: sqlite3.Connection, path: Path) -> None:
    """WAL journal (stored in the file: set once, kept by every opener). SQLite answers with the
    mode it could set, which is another one where WAL cannot work (no shared memory)."""
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        log.warning("the reviews database %s runs in journal mode %r, not WAL: reviews are still stored "
                    "safely, but readers and the writer wait for each other; keep it on a local disk", path, mode)


def _statements(script: str) -> list[str]:
    """A migration's statements one by one (`executescript` would COMMIT our transaction), cut
    where SQLite says one is complete: a ';' in a string, a comment or a trigger's body is not an end."""
    statements, start = [], 0
    for end in (index + 1 for index, char in enumerate(script) if char == ";"):
        if sqlite3.complete_statement(script[start:end]):
            statements.append(script[start:end].strip())
            start = end
    if script[start:].strip():
        raise ValueError(f"a migration ends with an incomplete statement: {script[start:].strip()[:80]!r}")
    return statements


def _tables(connection: sqlite3.Connection) -> set[str]:
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return {name for (name,) in connection.execute(query)}


def _our_tables() -> set[str]:
    """The tables the migrations make (applied to an empty database in memory)."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for migration in MIGRATIONS:
            for statement in _statements(migration):
                connection.execute(statement)
        return _tables(connection)
    finally:
        connection.close()


def _stored_before(connection: sqlite3.Connection, review: Review) -> int | None:
    """The id of the review stored under this review's idempotency key, if any; the same key with
    another review is refused (a client reusing its keys would otherwise lose reviews silently)."""
    if review.idempotency_key is None:
        return None
    content = COLUMNS[2:]  # all but the id and when it was stored
    found = connection.execute(f"SELECT id, {', '.join(content)} FROM reviews WHERE idempotency_key = ?",
                               (review.idempotency_key,)).fetchone()
    if found is None:
        return None
    if list(found[1:]) != _values(review, "")[1:]:
        raise ReviewError(f"The submission id {review.idempotency_key!r} was sent before with another review; "
                          "send a new id with each new review.")
    return found[0]


def _values(review: Review, created_at: str) -> list:
    fields = asdict(review)
    fields.update(created_at=created_at, missed=json.dumps(list(review.missed)),
                  invented=json.dumps(list(review.invented)), scores=json.dumps(review.scores))  # fmt: skip
    return [fields[column] for column in COLUMNS[1:]]


def _row(values: Sequence) -> dict:
    row = dict(zip(COLUMNS, values))
    for column in _JSON_COLUMNS:
        row[column] = json.loads(row[column])
    return row


# ---------------------------------------------------------------------------------------------
# Export


def to_csv(rows: Sequence[dict]) -> str:
    """Reviews as CSV: one column per metric; findings joined by '; '. Free text that a spreadsheet
    would run as a formula (=, +, -, @ first) gets a leading apostrophe."""
    buffer = io.StringIO()
    header = [c for c in COLUMNS if c != "scores"] + list(metrics.SENTENCE_KEYS)
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    for row in rows:
        flat = {key: value for key, value in row.items() if key != "scores"}
        flat.update(missed="; ".join(row["missed"]), invented="; ".join(row["invented"]))
        flat.update({key: row["scores"].get(key, "") for key in metrics.SENTENCE_KEYS})
        writer.writerow({key: spreadsheet_safe(value) for key, value in flat.items()})
    return buffer.getvalue()


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text: one it would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# ---------------------------------------------------------------------------------------------
# Optional copy on the hub


class JsonlMirror:
    """Appends stored reviews as JSON Lines to a file of its own in `folder` (one file per process:
    the scheduler uploads changed files whole, and a restarted app without persistent storage must
    never overwrite what an earlier run uploaded). `lock` is the uploader's, so a file is never
    read half-written."""

    def __init__(self, folder: str | os.PathLike, lock: threading.Lock):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"reviews-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.jsonl"
        self.lock = lock

    def append(self, rows: Iterable[dict]) -> None:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        try:
            with self.lock, open(self.file, "a", encoding="utf-8") as file:
                file.write(lines)
        except OSError as error:  # the database has the reviews; the copy catches up never, but says so
            log.error("reviews were stored but not copied to %s: %s", self.folder, error)


def hub_mirror(repo_id: str, folder: str | os.PathLike, every_minutes: float) -> JsonlMirror:
    """Copy every review stored from now on to the private hub dataset `repo_id` (created if
    needed; needs a write token, e.g. the Space's HF_TOKEN secret)."""
    from huggingface_hub import CommitScheduler

    scheduler = CommitScheduler(
        repo_id=repo_id, repo_type="dataset", folder_path=folder, every=every_minutes, private=True,
        path_in_repo="reviews", allow_patterns=["*.jsonl"],
    )  # fmt: skip
    return JsonlMirror(folder, scheduler.lock)


def open_store(path: str | os.PathLike | None = None) -> ReviewStore:
    """The store the app uses: `path` (default `default_database()`), copied to the hub when
    `CXRCAP_REVIEWS_REPO` is set (into `<database folder>/reviews-hub/`)."""
    path = Path(path) if path else default_database()
    repo_id = os.environ.get("CXRCAP_REVIEWS_REPO", "").strip()
    mirror = None
    if repo_id:
        every = float(os.environ.get("CXRCAP_REVIEWS_EVERY", "10"))
        mirror = hub_mirror(repo_id, path.parent / "reviews-hub", every)
    return ReviewStore(path, mirror)
