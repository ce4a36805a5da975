"""The reviews database, its checks and its CLI (statistics: test_review_summary.py; the app's part:
test_review_app.py)."""

import inspect
import json
import sqlite3
import threading

import pytest

from cxrcap import reviews
from cxrcap.__main__ import main
from cxrcap.reviews import ReviewError, ReviewStore, make_review
from reviews_fixture import SHA_A, SHA_B, TRUTH, add_fixture, review


@pytest.fixture
def store(tmp_path):
    return ReviewStore(tmp_path / "reviews.sqlite")


@pytest.fixture
def fixture_store(store):
    return add_fixture(store)


def test_new_database_is_wal_at_the_current_schema_version_and_reopens(tmp_path):
    path = tmp_path / "sub" / "reviews.sqlite"
    ReviewStore(path).add(review())
    store = ReviewStore(path)  # reopening migrates nothing and keeps the rows
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == reviews.SCHEMA_VERSION >= 1
        columns = [row[1] for row in connection.execute("PRAGMA table_info(reviews)")]
    assert columns == list(reviews.COLUMNS)
    for required in ("id", "created_at", "reviewer", "variant", "source", "decoding", "caption", "ground_truth",
                     "image_sha256", "example", "rating", "missed", "invented", "comment"):  # fmt: skip
        assert required in columns
    assert len(store.rows()) == 1 and store.integrity_check() == "ok"


def test_a_database_from_a_newer_cxrcap_is_refused_untouched(tmp_path):
    path = tmp_path / "reviews.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {reviews.SCHEMA_VERSION + 1}")
    with pytest.raises(ReviewError, match="newer than this cxrcap"):
        ReviewStore(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_a_review_round_trips_with_its_scores_and_findings(store):
    stored = review(missed=["left pleural effusion", "cardiomegaly"], invented=["right pneumothorax"],
                    example="/somewhere/on/the/server/xray-3.png", comment="  misses the heart  ",
                    source="microsoft/git-base", decoding="greedy, 30 tokens")  # fmt: skip
    [review_id] = store.add(stored)
    [row] = store.rows()
    assert row["id"] == review_id and row["created_at"].endswith("+00:00")
    assert row["missed"] == ["left pleural effusion", "cardiomegaly"] and row["invented"] == ["right pneumothorax"]
    assert row["example"] == "xray-3.png"  # a file name, never a path
    assert row["comment"] == "misses the heart"
    assert set(row["scores"]) == set(reviews.metrics.SENTENCE_KEYS)
    assert row["scores"] == pytest.approx(reviews.metrics.score("left pleural effusion", TRUTH))
    assert review(ground_truth="").scores == {}  # nothing to score against


@pytest.mark.parametrize("changes, message", [
    (dict(variant="gpt-4"), "Unknown variant 'gpt-4'; choose one of git-base"),
    (dict(rating="excellent"), "Rating must be one of correct, partly, wrong"),
    (dict(rating=None), "Rating must be one of"),
    (dict(rating=3), "The rating must be text"),
    (dict(image_sha256="not-a-digest"), "The image is missing"),
    (dict(caption="x" * (reviews.MAX_TEXT_CHARS + 1)), "at most 5,000 are stored"),
    (dict(reviewer="x" * 101), "reviewer name is too long"),
    (dict(missed="pneumothorax"), "must be a list"),
])  # fmt: skip
def test_bad_values_are_refused_with_a_clear_message(changes, message):
    with pytest.raises(ReviewError, match=message):
        review(**changes)


def test_a_huge_comment_is_cut_with_a_notice_and_html_is_kept_as_text(store):
    stored, notices = make_review(variant="blip-base", caption="c", rating=" Wrong ", image_sha256=SHA_B,
                                  comment="<b>bold</b>" + "x" * 1_000_000)  # fmt: skip
    assert stored.rating == "wrong"
    assert notices == ["The comment had 1,000,011 characters; its first 2,000 are stored."]
    store.add(stored)
    [row] = store.rows()
    assert row["comment"].startswith("<b>bold</b>") and len(row["comment"]) == reviews.MAX_COMMENT_CHARS


def test_a_submission_is_stored_once_and_whole(store):
    first = [review(submission="s1"), review(variant="blip-base", submission="s1")]
    assert len(store.add(first)) == 2
    with pytest.raises(ReviewError, match="submitted already"):
        store.add([review(variant="git-base-ft", submission="s1"), review(submission="s1")])
    assert [row["variant"] for row in store.rows()] == ["git-base", "blip-base"]  # nothing of the repeat


def test_concurrent_writers_from_threads_all_land(store):
    errors = []

    def write(worker):
        try:
            for index in range(20):
                store.add(review(comment=f"{worker}-{index}"))
        except Exception as error:  # collected: the test fails with the message
            errors.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({row["comment"] for row in store.rows()}) == 160


def test_delete_by_reviewer(fixture_store):
    assert fixture_store.delete_reviewer("Dr 0") == 5
    assert {row["reviewer"] for row in fixture_store.rows()} == {"Dr 1"}
    assert fixture_store.version() == (4, 8)  # ids 2, 4, 6, 8 remain


def test_csv_export_flattens_and_defuses_formulas(store):
    store.add(review(comment="=HYPERLINK(\"http://x\")", missed=["a", "b"]))
    text = reviews.to_csv(store.rows())
    header, line = text.splitlines()[:2]
    assert header.split(",")[-7:] == list(reviews.metrics.SENTENCE_KEYS)
    assert "'=HYPERLINK" in line and "a; b" in line


def test_the_hub_copy_folder_holds_every_review_as_json_lines(tmp_path):
    folder = tmp_path / "reviews-hub"
    store = ReviewStore(tmp_path / "reviews.sqlite", reviews.JsonlMirror(folder, threading.Lock()))
    store.add([review(), review(variant="blip-base", comment="<i>html</i>")])
    store.add(review(variant="git-base-ft"))
    [file] = folder.glob("reviews-*.jsonl")
    copied = [json.loads(line) for line in file.read_text().splitlines()]
    assert copied == store.rows()
    # A second app run writes a new file: the scheduler never overwrites an earlier run's upload.
    reviews.JsonlMirror(folder, threading.Lock()).append(store.rows()[:1])
    assert len(list(folder.glob("reviews-*.jsonl"))) == 2


def test_hub_mirror_calls_commit_scheduler_as_its_signature_allows():
    from huggingface_hub import CommitScheduler

    source = inspect.getsource(reviews.hub_mirror)
    keywords = dict(repo_id="o/n", repo_type="dataset", folder_path="f", every=10.0, private=True,
                    path_in_repo="reviews", allow_patterns=["*.jsonl"])  # fmt: skip
    inspect.signature(CommitScheduler).bind(**keywords)
    assert all(f"{key}=" in source for key in keywords)
    assert "self.lock = Lock()" in inspect.getsource(CommitScheduler.__init__)  # the lock JsonlMirror shares


def test_cli_summary_export_delete(fixture_store, tmp_path, capsys):
    db = str(fixture_store.path)
    assert main(["reviews", "summary", "--db", db]) == 0
    assert "| GIT base | 3 | 2 |" in capsys.readouterr().out
    out = tmp_path / "all.csv"
    assert main(["reviews", "export", "--csv", str(out), "--db", db]) == 0
    assert "9 reviews written" in capsys.readouterr().out and len(out.read_text().splitlines()) == 10
    assert main(["reviews", "delete", "--reviewer", "Dr 1", "--db", db]) == 0
    assert "deleted 4 reviews by 'Dr 1'" in capsys.readouterr().out
    assert main(["reviews", "export", "--db", db]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
    assert main(["reviews", "delete", "--db", db]) == 2
    assert "delete needs --reviewer" in capsys.readouterr().err
    assert main(["reviews", "summary", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no reviews database" in capsys.readouterr().err


def test_an_error_sqlite_rolled_back_itself_is_the_error_raised(store):
    """A full disk (or an interrupt) makes SQLite roll the whole transaction back; a second ROLLBACK
    would fail ("no transaction is active") and hide why the write failed."""
    with pytest.raises(sqlite3.OperationalError, match="full"):
        with store._transaction() as connection:
            connection.execute("PRAGMA max_page_count = 2")  # this connection's file cannot grow: a full disk
            connection.execute("INSERT INTO reviews (created_at, variant, caption, image_sha256, rating) "
                               "VALUES ('now', 'git-base', ?, ?, 'wrong')", ("x" * 100_000, SHA_A))
    assert store.rows() == []


def test_a_migration_with_semicolons_in_a_string_a_comment_and_a_trigger_applies_whole(tmp_path, monkeypatch):
    noted = """
    CREATE TABLE notes (text TEXT NOT NULL DEFAULT 'first; second');  -- a comment; with a semicolon
    CREATE TRIGGER reviews_noted AFTER INSERT ON reviews BEGIN
        INSERT INTO notes (text) VALUES ('stored; ' || NEW.variant);
    END;
    """
    monkeypatch.setattr(reviews, "MIGRATIONS", (*reviews.MIGRATIONS, noted))
    monkeypatch.setattr(reviews, "SCHEMA_VERSION", reviews.SCHEMA_VERSION + 1)
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.add(review())
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("SELECT text FROM notes").fetchall() == [("stored; git-base",)]


def test_a_journal_mode_other_than_wal_is_said(caplog):
    connection = sqlite3.connect(":memory:")  # SQLite answers "memory": it cannot use WAL here
    reviews._use_wal(connection, "somewhere.sqlite")
    assert "somewhere.sqlite" in caplog.text and "'memory', not WAL" in caplog.text


def test_an_unrelated_sqlite_file_is_refused_untouched(tmp_path, capsys):
    path = tmp_path / "accounts.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT)")
    before = path.read_bytes()
    with pytest.raises(ReviewError, match="accounts.sqlite holds tables that are not cxrcap's reviews: accounts"):
        ReviewStore(path)
    assert main(["reviews", "summary", "--db", str(path)]) == 2
    assert "not cxrcap's reviews" in capsys.readouterr().err
    assert path.read_bytes() == before and not path.with_name("accounts.sqlite-wal").exists()
    with sqlite3.connect(path) as connection:
        assert [row[0] for row in connection.execute("SELECT name FROM sqlite_master")] == ["accounts"]


def test_a_retried_idempotency_key_stores_once_and_answers_with_the_first_id(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite", reviews.JsonlMirror(tmp_path / "hub", threading.Lock()))
    [first] = store.add(review(idempotency_key="client-7f3a"))
    assert store.add(review(idempotency_key="client-7f3a")) == [first]  # a retry: the answer the first call got
    assert [row["idempotency_key"] for row in store.rows()] == ["client-7f3a"]
    assert len(store.mirror.file.read_text().splitlines()) == 1  # copied once too
    with pytest.raises(ReviewError, match="'client-7f3a' was sent before with another review"):
        store.add(review(idempotency_key="client-7f3a", rating="wrong"))
    [other] = store.add(review(idempotency_key="client-8b01"))
    assert other != first and len(store.rows()) == 2
    assert review(idempotency_key="  ").idempotency_key is None  # empty: no key
    with pytest.raises(ReviewError, match="submission id is too long"):
        review(idempotency_key="k" * 101)


def test_an_empty_caption_is_refused():
    with pytest.raises(ReviewError, match="The caption is empty"):
        review(caption=" \n ")


def test_a_database_of_the_first_schema_migrates_keeping_its_reviews(tmp_path):
    path = tmp_path / "reviews.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in reviews._statements(reviews.MIGRATIONS[0]):
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.execute("INSERT INTO reviews (created_at, variant, caption, image_sha256, rating, submission) "
                       "VALUES ('2026-01-01T00:00:00+00:00', 'git-base', 'old caption', ?, 'correct', 's1')", (SHA_A,))
    connection.close()
    store = ReviewStore(path)
    [row] = store.rows()
    assert (row["caption"], row["submission"], row["idempotency_key"]) == ("old caption", "s1", None)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == reviews.SCHEMA_VERSION == 2
    assert store.integrity_check() == "ok"
