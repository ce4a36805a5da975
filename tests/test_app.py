"""The running app through its API, as `gradio_client` users call it, and under load."""

import sqlite3
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client, handle_file

from cxrcap.variants import VARIANT_IDS


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_api_captions_a_real_xray_with_four_variants_and_scores(client, cxr_image):
    rows = client.predict(handle_file(str(cxr_image)), "supine AP chest X-ray", 1, 8, api_name="/caption")
    assert [row["variant"] for row in rows] == list(VARIANT_IDS)
    for row in rows:
        assert row["caption"] and row["untrained"] is True and row["error"] is None
        assert 0.0 <= row["meteor"] <= 1.0 and 0.0 <= row["bleu"] <= 1.0


def test_api_bad_file_is_a_clean_error_and_the_app_stays_up(client, tmp_path, cxr_image):
    fake = tmp_path / "scan.png"
    fake.write_text("<html>not an x-ray</html>")
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(fake)), "", 1, 8, api_name="/caption")
    assert "not an image" in str(caught.value) and "Traceback" not in str(caught.value)
    rows = client.predict(handle_file(str(cxr_image)), "", 1, 5, api_name="/caption")
    assert len(rows) == 4


def test_eight_concurrent_clients_five_requests_each(app_url, cxr_image):
    def user(_):
        client = Client(app_url, verbose=False)
        latencies = []
        for _ in range(5):
            start = time.perf_counter()
            rows = client.predict(handle_file(str(cxr_image)), "chest x-ray", 1, 5, api_name="/caption")
            assert len(rows) == 4 and all(row["caption"] for row in rows)
            latencies.append(time.perf_counter() - start)
        return latencies

    with ThreadPoolExecutor(8) as pool:
        latencies = sorted(t for user_latencies in pool.map(user, range(8)) for t in user_latencies)
    assert len(latencies) == 40
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"\nload: 8 clients x 5 requests, tiny models: p50 {p50:.2f} s, p95 {p95:.2f} s")


def test_the_same_file_from_two_clients_with_five_others_queued_between(app_url, cxr_examples_dir):
    # Gradio keeps one copy of identical uploads; the first request must not take it from the last.
    # A slow request first keeps the rest queued until every file is uploaded.
    images = sorted((cxr_examples_dir / "images").glob("*.jpg"))
    order = [images[0], *images[1:6], images[0]]
    clients = [Client(app_url, verbose=False) for _ in range(len(order) + 1)]
    slow = clients[0].submit(handle_file(str(images[7])), "", 8, 100, api_name="/caption")
    jobs = [client.submit(handle_file(str(path)), "", 1, 5, api_name="/caption") for client, path in zip(clients[1:], order)]
    for job in [slow, *jobs]:
        rows = job.result(timeout=300)
        assert len(rows) == 4 and all(row["error"] is None for row in rows)


def test_api_says_when_it_cut_a_long_ground_truth(client, cxr_image):
    rows = client.predict(handle_file(str(cxr_image)), "chest " * 200_000, 1, 5, api_name="/caption")  # 1.2 MB
    assert all("only the first" in row["ground_truth_notice"] for row in rows)
    assert client.predict(handle_file(str(cxr_image)), "chest", 1, 5, api_name="/caption")[0]["ground_truth_notice"] is None


GENERIC = "upstream Gradio app has raised an exception"


def api_error(client, *args) -> str:
    """What a gradio_client user reads when /caption refuses `args`."""
    with pytest.raises(Exception) as caught:
        client.predict(*args, api_name="/caption")
    message = str(caught.value)
    assert GENERIC not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("num_beams, max_new_tokens, says", [
    ("abc", 8, "num_beams must be a whole number from 1 to 8"),
    (None, 8, "num_beams must be a whole number from 1 to 8"),
    (0, 8, "num_beams must be a whole number from 1 to 8"),
    (2.5, 8, "num_beams must be a whole number from 1 to 8"),
    (True, 8, "num_beams must be a whole number from 1 to 8"),
    (1, "many", "max_new_tokens must be a whole number from 5 to 100"),
    (1, 1000, "max_new_tokens must be a whole number from 5 to 100"),
])
def test_api_bad_decoding_settings_say_which_argument_and_its_range(client, cxr_image, num_beams, max_new_tokens, says):
    message = api_error(client, handle_file(str(cxr_image)), "", num_beams, max_new_tokens)
    assert says in message and repr(num_beams if "beams" in says else max_new_tokens) in message


@pytest.mark.parametrize("file", ["a plain path", 42, ["x.png"], {"path": "x.png"}])
def test_api_file_that_is_not_an_upload_says_to_use_handle_file(client, cxr_image, file):
    sent = str(cxr_image) if file == "a plain path" else file
    message = api_error(client, sent, "", 1, 8)
    assert "handle_file" in message and str(cxr_image.parent) not in message


def test_api_ground_truth_must_be_text_not_a_list(client, cxr_image):
    message = api_error(client, handle_file(str(cxr_image)), ["a", "b"], 1, 8)
    assert "ground_truth must be text" in message and "list" in message
    rows = client.predict(handle_file(str(cxr_image)), None, 1.0, 5, api_name="/caption")  # None: no scores; 1.0 is 1
    assert len(rows) == 4 and rows[0]["bleu"] is None


def test_api_review_refuses_a_list_for_text_storing_nothing(client, reviews_db, cxr_image):
    def count():
        with sqlite3.connect(reviews_db) as connection:
            return connection.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]

    before = count()
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(str(cxr_image)), "truth", "git-base", "a caption", "correct", ["fine", "really"], "",
                       api_name="/review")
    assert "comment must be text (a string); got a list" in str(caught.value) and GENERIC not in str(caught.value)
    assert count() == before
