"""The scheduler: who waits for whom. Requests share the caption workers, a person's captions go
before background work, the fifth slot answers on a lane of its own; one pre-processing per
processor, cards in completion order, and a failing variant never stops the others."""

import threading

import pytest
from PIL import Image

from cxrcap import scheduler
from cxrcap.app.example_cache import ExampleCache, caption_examples
from cxrcap.captioner import Captioner, DecodeSettings, VariantUnavailable
from cxrcap.images import load_image
from cxrcap.lineup import build_captioners
from cxrcap.scheduler import stream_captions, warm_up
from cxrcap.variants import VARIANT_IDS, VARIANTS

SETTINGS = DecodeSettings(max_new_tokens=5)


@pytest.fixture(scope="module")
def xrays(cxr_examples_dir):
    return [load_image(path) for path in sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3]]


@pytest.fixture(scope="module")
def xray(cxr_image) -> Image.Image:
    return Image.open(cxr_image).convert("RGB")


def test_variants_with_the_same_processor_share_the_preprocessing(captioners, xrays, monkeypatch):
    calls = []
    for variant_id, captioner in captioners.items():
        real = captioner.preprocess
        monkeypatch.setattr(captioner, "preprocess", lambda images, real=real, vid=variant_id: calls.append(vid) or real(images))
    assert captioners["git-base"].preprocessing_key == captioners["git-base-ft"].preprocessing_key
    assert captioners["git-base"].preprocessing_key != captioners["blip-base"].preprocessing_key
    list(stream_captions(captioners, xrays[1], DecodeSettings(max_new_tokens=5)))
    assert sorted(VARIANTS[vid].family for vid in calls) == ["blip", "git"]  # one pre-processing per family


def test_cards_arrive_in_completion_order_and_a_broken_variant_does_not_stop_the_others(tiny_sources, xrays, tmp_path):
    # The slow variant comes first in the request; the broken one (an empty folder) fails at once.
    captioners = {"git-base": Captioner("git-base", tiny_sources["git-base"]), "blip-base": Captioner("blip-base", str(tmp_path))}
    results = list(stream_captions(captioners, xrays[0], DecodeSettings(max_new_tokens=64), workers=2))
    assert [r.variant_id for r in results] == ["blip-base", "git-base"]
    assert results[0].caption is None and "no readable model config" in results[0].error
    assert results[1].error is None and results[1].caption
    with pytest.raises(VariantUnavailable):
        captioners["blip-base"].load()  # remembered, not retried


@pytest.mark.parametrize("workers", [2, 1])
def test_a_variant_that_fails_while_captioning_gets_an_error_card_and_the_others_still_caption(tiny_sources, xrays, monkeypatch, workers):
    captioners = {vid: Captioner(vid, tiny_sources[vid]) for vid in ("git-base", "blip-base")}

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory\nsecond line")

    monkeypatch.setattr(captioners["git-base"], "generate_ids", out_of_memory)
    results = {r.variant_id: r for r in stream_captions(captioners, xrays[0], DecodeSettings(max_new_tokens=5), workers=workers)}
    assert results["git-base"].caption is None
    assert results["git-base"].error == "captioning failed (RuntimeError: DefaultCPUAllocator: can't allocate memory)"
    assert results["blip-base"].error is None and results["blip-base"].caption


def test_warm_up_loads_each_model_and_reports_the_unavailable(tiny_sources, tmp_path):
    captioners = {"git-base-ft": Captioner("git-base-ft", tiny_sources["git-base-ft"]), "blip-base": Captioner("blip-base", str(tmp_path))}
    assert not captioners["git-base-ft"].is_loaded
    results = {r.variant_id: r for r in warm_up(captioners)}
    assert captioners["git-base-ft"].is_loaded and results["git-base-ft"].error is None
    assert "no readable model config" in results["blip-base"].error


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_workers_setting_is_refused_with_a_clear_message(captioners, xrays, monkeypatch, value):
    monkeypatch.setenv("CXRCAP_WORKERS", value)
    with pytest.raises(ValueError, match="CXRCAP_WORKERS must be a whole number"):
        list(stream_captions(captioners, xrays[0]))


def test_a_request_during_background_captioning_goes_before_every_waiting_background_job(
    captioners, cxr_examples_dir, monkeypatch
):
    """With two workers busy on background captions, a person's four captions start as soon as
    the running ones end: no background caption starts in between (each waits at most one
    variant's caption time)."""
    monkeypatch.setenv("CXRCAP_WORKERS", "2")
    workers = scheduler._caption_workers(2)
    events, lock, started = [], threading.Lock(), threading.Event()
    person = Image.new("RGB", (300, 300), "white")

    def log(what):
        with lock:
            events.append(what)

    # Logged inside the queue's own put and get, which run under its lock: the log is the order in
    # which jobs entered the queue and left it for a worker, with no thread switch in between.
    jobs = workers._jobs
    real_put, real_get = jobs._put, jobs._get

    def kind(item):
        return "background" if item[0] == workers._BACKGROUND else "person"

    def put(item):
        real_put(item)
        log("queued " + kind(item))

    def get():
        item = real_get()
        log("start " + kind(item))
        started.set()
        return item

    monkeypatch.setattr(jobs, "_put", put)
    monkeypatch.setattr(jobs, "_get", get)
    images = {str(i): load_image(p) for i, p in enumerate(sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3])}
    background = threading.Thread(target=caption_examples, args=(ExampleCache(), images, captioners, SETTINGS))
    background.start()
    assert started.wait(60)
    results = list(stream_captions(captioners, person, SETTINGS, workers=2))
    background.join(120)

    assert sorted(r.variant_id for r in results) == sorted(VARIANT_IDS) and all(r.caption is not None for r in results)
    last_queued = max(i for i, e in enumerate(events) if e == "queued person")
    last_person_start = max(i for i, e in enumerate(events) if e == "start person")
    assert "start background" not in events[last_queued:last_person_start], events
    assert events.count("start background") == 3 * len(VARIANT_IDS)  # the background work still finished


def test_the_fifth_answers_on_its_own_low_priority_lane_so_the_four_never_wait_for_it(tiny_sources, xray):
    captioners = build_captioners(list(VARIANT_IDS), tiny_random=True, extra_model="tiny")
    extra = captioners["extra"]
    extra.load()
    threads, release = {}, threading.Event()
    real_generate = extra.generate_ids

    def slow_generate(*args, **kwargs):  # a large model's answer: it takes as long as the test says
        threads["extra"] = threading.current_thread().name
        release.wait(timeout=60)
        return real_generate(*args, **kwargs)

    extra.generate_ids = slow_generate
    settings = DecodeSettings(max_new_tokens=4)
    try:
        # Two requests in a row, each leaving its fifth answer running: on the study's two workers
        # those answers would hold both, and a third request's four would wait for them.
        for _ in range(2):
            four = []
            for result in stream_captions(captioners, xray, settings):
                four.append(result)
                if len(four) == len(VARIANT_IDS):
                    break
            assert {r.variant_id for r in four} == set(VARIANT_IDS) and all(r.caption for r in four)
        assert threads["extra"].startswith("cxrcap-low-priority")
    finally:
        release.set()
    (answer,) = [r for r in stream_captions({"extra": extra}, xray, settings)]
    assert answer.caption
