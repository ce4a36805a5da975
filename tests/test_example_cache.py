"""The example cache: keyed by pixels, weights and settings, never stale (background work yields to people: test_scheduler.py)."""

import os
import shutil

import pytest

from cxrcap.app.example_cache import ExampleCache, caption_examples, image_digest
from cxrcap.captioner import Captioner, DecodeSettings
from cxrcap.images import load_image
from cxrcap.variants import VARIANT_IDS

SETTINGS = DecodeSettings(max_new_tokens=5)


@pytest.fixture(scope="module")
def xray(cxr_image):
    return load_image(cxr_image)


def cached_ids(cache, image, captioners, settings=SETTINGS) -> set[str]:
    return set(cache.lookup(image_digest(image), captioners, settings))


def test_equal_pixels_hit_whatever_the_file_and_other_pixels_miss(captioners, xray, tmp_path):
    cache = ExampleCache()
    caption_examples(cache, {image_digest(xray): xray}, captioners, SETTINGS)
    assert cached_ids(cache, xray, captioners) == set(VARIANT_IDS)
    xray.save(tmp_path / "same.png")  # another file, the same pixels: an upload of the example
    assert cached_ids(cache, load_image(tmp_path / "same.png"), captioners) == set(VARIANT_IDS)
    assert cached_ids(cache, xray.rotate(90), captioners) == set()


def test_a_changed_source_weights_int8_or_setting_is_never_served_a_stale_caption(captioners, xray, tiny_sources, tmp_path):
    cache = ExampleCache()
    caption_examples(cache, {image_digest(xray): xray}, {"git-base": captioners["git-base"]}, SETTINGS)
    assert cached_ids(cache, xray, {"git-base": captioners["git-base"]}) == {"git-base"}

    assert cached_ids(cache, xray, {"git-base": captioners["git-base"]}, DecodeSettings(max_new_tokens=6)) == set()
    assert cached_ids(cache, xray, {"git-base": captioners["git-base"]}, DecodeSettings(num_beams=2, max_new_tokens=5)) == set()
    int8 = Captioner("git-base", tiny_sources["git-base"], untrained=True, quantize_int8=True)
    assert cached_ids(cache, xray, {"git-base": int8}) == set()

    other_source = shutil.copytree(tiny_sources["git-base"], tmp_path / "git-copy")  # equal weights, another source
    assert cached_ids(cache, xray, {"git-base": Captioner("git-base", str(other_source), untrained=True)}) == set()
    rewritten = Captioner("git-base", str(other_source), untrained=True)  # the same folder, re-written since
    caption_examples(cache, {image_digest(xray): xray}, {"git-base": rewritten}, SETTINGS)
    weights = next(other_source.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cached_ids(cache, xray, {"git-base": Captioner("git-base", str(other_source), untrained=True)}) == set()


def test_a_restart_with_the_other_crop_setting_is_not_served_the_old_rows(xray, tiny_sources, tmp_path, monkeypatch):
    rows, digest = tmp_path / "rows", image_digest(xray)
    whole = {"git-base": Captioner("git-base", tiny_sources["git-base"], untrained=True, quantize_int8=False)}
    caption_examples(ExampleCache(rows), {digest: xray}, whole, SETTINGS)
    monkeypatch.setenv("CXRCAP_CENTRE_CROP", "1")  # the base variants' released crop: other pixel values
    cropped = {"git-base": Captioner("git-base", tiny_sources["git-base"], untrained=True, quantize_int8=False)}
    assert cached_ids(ExampleCache(rows), xray, cropped) == set()


def test_the_fifths_prompt_keys_the_fifth_only_and_an_empty_one_is_its_default(captioners, xray, tiny_sources):
    from cxrcap.extra import ExtraCaptioner

    cache, digest = ExampleCache(), image_digest(xray)
    extra = ExtraCaptioner.named("tiny", tiny_random=True)
    caption_examples(cache, {digest: xray}, {**captioners, "extra": extra}, SETTINGS)  # start-up: no prompt given
    asked = DecodeSettings(max_new_tokens=5, prompt=extra.prompt)  # what the UI sends: the default, written out
    assert cached_ids(cache, xray, {**captioners, "extra": extra}, asked) == {*VARIANT_IDS, "extra"}
    other = DecodeSettings(max_new_tokens=5, prompt="Is there a pneumothorax?")
    assert cached_ids(cache, xray, {**captioners, "extra": extra}, other) == set(VARIANT_IDS)


def test_rows_on_disk_answer_after_a_restart_and_failures_are_not_kept(captioners, xray, tmp_path):
    first = ExampleCache(tmp_path / "rows")
    unavailable = Captioner("git-base-ft", str(tmp_path / "absent"), untrained=True)
    caption_examples(first, {image_digest(xray): xray}, {**captioners, "git-base-ft": unavailable}, SETTINGS)
    restarted = ExampleCache(tmp_path / "rows")
    rows = restarted.lookup(image_digest(xray), captioners, SETTINGS)
    assert set(rows) == set(VARIANT_IDS) - {"git-base-ft"}
    assert rows == {vid: row for vid, row in first.lookup(image_digest(xray), captioners, SETTINGS).items() if vid in rows}
    assert restarted.lookup(image_digest(xray), {"git-base-ft": unavailable}, SETTINGS) == {}


def service_with_examples(example_files, tmp_path, **kwargs):
    from cxrcap.app.service import CaptionService

    service = CaptionService(list(VARIANT_IDS), tiny_random=True, public_files=example_files,
                             example_cache=ExampleCache(tmp_path / "rows"), **kwargs)
    service.start()
    assert service.examples_cached.wait(300)
    return service


def no_live_captions(*args, **kwargs):
    raise AssertionError("captioned again instead of answering from the cache")


def test_the_app_answers_an_example_and_an_equal_upload_from_the_cache(cxr_image, tmp_path, monkeypatch):
    from cxrcap.app import service as service_module

    service = service_with_examples([str(cxr_image)], tmp_path)
    monkeypatch.setattr(service_module, "stream_captions", no_live_captions)
    counts, comparison = [], None
    for comparison, _ in service.compare(load_image(cxr_image), "supine AP chest X-ray", 1, 30):
        counts.append(len(comparison.outcomes))
    assert counts == [4]  # every card in the first update
    assert all(o.result.caption and o.scores for o in comparison.outcomes.values())
    shutil.copy(cxr_image, tmp_path / "upload.jpg")  # a visitor uploads the same file
    assert len(list(service.compare(load_image(tmp_path / "upload.jpg"), "", 1, 30))[-1][0].outcomes) == 4
    with pytest.raises(AssertionError, match="captioned again"):  # other settings: not from the cache
        list(service.compare(load_image(cxr_image), "", 2, 30))


def test_with_a_fifth_model_an_example_click_shows_the_four_cached_cards_at_once(cxr_image, tmp_path):
    service = service_with_examples([str(cxr_image)], tmp_path, extra_model="tiny")
    files = set((tmp_path / "rows").iterdir())
    # the UI sends the fifth's prompt with the decoding settings
    first, _ = next(service.compare(load_image(cxr_image), "", 1, 30, prompt=service.extra_prompt))
    assert set(first.outcomes) == set(VARIANT_IDS)
    assert set((tmp_path / "rows").iterdir()) == files  # nothing captioned again for the four


def test_on_zero_gpu_examples_are_cached_on_first_use(cxr_image, tmp_path, monkeypatch):
    from cxrcap.app import service as service_module, zerogpu

    monkeypatch.setattr(zerogpu, "ON_ZERO_GPU", True)  # SPACES_ZERO_GPU itself is never set in tests
    service = service_with_examples([str(cxr_image)], tmp_path)
    image = load_image(cxr_image)
    assert cached_ids(service.example_cache, image, service.captioners, DecodeSettings()) == set()
    first = list(service.compare(image, "", 1, 30))[-1][0]
    monkeypatch.setattr(service_module, "stream_captions", no_live_captions)
    again = list(service.compare(image, "", 1, 30))[-1][0]
    assert {v: o.result.caption for v, o in again.outcomes.items()} == {v: o.result.caption for v, o in first.outcomes.items()}


def test_fast_int8_captions_are_marked_and_cached_apart(cxr_image, tmp_path):
    from cxrcap.app.cards import render_cards

    service = service_with_examples([str(cxr_image)], tmp_path)
    assert service.int8_available and not service.int8_default
    comparison = list(service.compare(load_image(cxr_image), "", 1, 30, int8=True))[-1][0]
    assert all(o.result.int8 and o.result.caption is not None for o in comparison.outcomes.values())
    assert render_cards(service.variant_ids, comparison).count(">int8</span>") == 4
    assert all(row["int8"] for row in comparison.rows())


def test_on_a_gpu_the_examples_go_in_one_batch_per_variant_with_the_same_captions(captioners, cxr_examples_dir, monkeypatch):
    images = {str(i): load_image(p) for i, p in enumerate(sorted((cxr_examples_dir / "images").glob("*.jpg"))[:3])}
    one_by_one, batched = ExampleCache(), ExampleCache()
    caption_examples(one_by_one, images, captioners, SETTINGS, batched=False)
    calls = []
    for captioner in captioners.values():
        real = captioner.caption_with_ids
        monkeypatch.setattr(captioner, "caption_with_ids",
                            lambda images, settings, real=real: calls.append(len(images)) or real(images, settings))
    assert caption_examples(batched, images, captioners, SETTINGS, batched=True) == 3 * len(VARIANT_IDS)
    assert calls == [3] * len(VARIANT_IDS)
    for digest in images:
        expected = {vid: r.caption for vid, r in one_by_one.lookup(digest, captioners, SETTINGS).items()}
        assert {vid: r.caption for vid, r in batched.lookup(digest, captioners, SETTINGS).items()} == expected
