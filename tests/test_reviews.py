"""The reviews database, its checks, its statistics and its CLI (the app's part: test_review_app.py)."""

import inspect
import json
import math
import sqlite3
import threading

import numpy as np
import pytest
from scipy.stats import kendalltau

from cxrcap import reviews
from cxrcap.__main__ import main
from cxrcap.reviews import ReviewError, ReviewStore, kendall_tau_b, make_review, summarise, wilson_interval

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
TRUTH = "Left pleural effusion and cardiomegaly."

# (image, variant, caption, rating): ties in ratings and in scores on purpose.
FIXTURE = [
    (SHA_A, "git-base", "left pleural effusion and cardiomegaly", "correct"),
    (SHA_A, "blip-base", "left pleural effusion", "partly"),
    (SHA_A, "git-base-ft", "right pneumothorax", "wrong"),
    (SHA_B, "git-base", "left pleural effusion and cardiomegaly", "partly"),
    (SHA_B, "blip-base", "chest x-ray", "wrong"),
    (SHA_B, "blip-base-ft", "cardiomegaly", "partly"),
    (SHA_C, "git-base", "a chest x-ray", "wrong"),
    (SHA_C, "blip-base-ft", "effusion on the left and cardiomegaly", "correct"),
    (SHA_C, "git-base-ft", "chest x-ray", "wrong"),
]


def review(**changes):
    fields = dict(variant="git-base", caption="left pleural effusion", rating="partly", image_sha256=SHA_A,
                  ground_truth=TRUTH, reviewer="Dr A", role="radiologist")  # fmt: skip
    fields.update(changes)
    return make_review(**fields)[0]


@pytest.fixture
def store(tmp_path):
    return ReviewStore(tmp_path / "reviews.sqlite")


@pytest.fixture
def fixture_store(store):
    store.add([review(image_sha256=image, variant=variant, caption=caption, rating=rating, reviewer=f"Dr {i % 2}")
               for i, (image, variant, caption, rating) in enumerate(FIXTURE)])  # fmt: skip
    return store


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


def test_kendall_tau_b_equals_scipy_on_the_fixture(fixture_store):
    rows = fixture_store.rows()
    ranks = [reviews.RATING_RANK[row["rating"]] for row in rows]
    summary = summarise(rows, n_resamples=200)
    for agreement in summary.agreements:
        scores = [row["scores"][agreement.metric] for row in rows]
        expected = kendalltau(ranks, scores, variant="b").statistic
        if math.isnan(expected):
            assert math.isnan(agreement.tau_b)
        else:
            assert agreement.tau_b == pytest.approx(expected, abs=1e-12)
            assert agreement.low <= agreement.tau_b <= agreement.high
        assert agreement.n_reviews == len(FIXTURE)
    assert not math.isnan(summary.agreements[0].tau_b)  # BLEU varies: the fixture tests something


def test_weighted_kendall_tau_b_equals_scipy_on_repeated_observations():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, 40)
    y = np.round(rng.random(40), 1)  # many ties
    weights = rng.integers(0, 4, size=(5, 40))
    taus = kendall_tau_b(x, y, weights)
    for row, tau in zip(weights, taus):
        expected = kendalltau(np.repeat(x, row), np.repeat(y, row), variant="b").statistic
        assert tau == pytest.approx(expected, abs=1e-12)
    # by hand: two concordant pairs, one tie in x, none in y: 2 / sqrt(2 * 3)
    assert kendall_tau_b([0, 1, 1], [0.1, 0.2, 0.3])[0] == pytest.approx(2 / math.sqrt(6))


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_summary_shares_reviewers_and_markdown(fixture_store):
    summary = summarise(fixture_store.rows(), n_resamples=100)
    assert (summary.n_reviews, summary.n_reviewers, summary.n_images) == (9, 2, 3)
    git = summary.variants[0]
    assert git.variant == "git-base" and (git.n_reviews, git.n_images) == (3, 3)
    assert [git.shares[r].count for r in reviews.RATINGS] == [1, 1, 1]
    assert git.shares["correct"].share == pytest.approx(1 / 3)
    assert (git.shares["correct"].low, git.shares["correct"].high) == pytest.approx(wilson_interval(1, 3))
    text = reviews.summary_markdown(summary)
    assert "| GIT base | 3 | 2 | 33% (6%-79%)" in text and "Wilson 95% interval" in text
    assert "Kendall's tau-b" in text and "bootstrap over images" in text
    assert reviews.summary_markdown(summarise([])).startswith("No reviews yet")
    one_image = summarise([row for row in fixture_store.rows() if row["image_sha256"] == SHA_A])
    assert not math.isnan(one_image.agreements[0].tau_b) and math.isnan(one_image.agreements[0].low)
    assert reviews._signed(-0.0004) == "+0.00"


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
