"""The running app through its API, as `gradio_client` users call it, and under load."""

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
