"""The app's own cache of example captions, so a click on an example answers at once.

Gradio caches `gr.Examples`, never a `gr.Gallery` used as a picker, so the app keeps this one.
A row is one variant's caption of one image, keyed by what decides the caption:

- the image's content (a hash of its decoded pixels: an upload equal to an example hits too),
- the variant's weights as loaded (`Captioner.fingerprint`: source, revision or files, int8),
- its image processor (`Captioner.preprocessing_key`: `CXRCAP_CENTRE_CROP` changes the base variants'),
- the decoding settings that variant reads (`Captioner.own_settings`): the extra slot's prompt, with
  its default written out, keys the extra slot only, so the study's rows answer whatever it is asked.

Change any of them and the key changes: a stale caption cannot be served. Rows also go to disk,
one small JSON file each under `cache_root()/example-captions/` (`$CXRCAP_CACHE`), so a restarted
Space does not caption its examples again. Only the examples' captions are kept (the service
decides what it stores); an upload's caption never is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from PIL import Image

from ..cache import cache_root
from ..captioner import CaptionResult, Captioner, DecodeSettings, VariantUnavailable
from ..files import write_atomically
from ..scheduler import stream_captions

log = logging.getLogger(__name__)
FORMAT = 1  # bump when a row's meaning changes: older rows are then never read


def image_digest(image: Image.Image) -> str:
    """A hash of the decoded pixels (mode, size, bytes): equal images, equal digests, whatever file they came in."""
    digest = hashlib.sha256(f"{image.mode} {image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class ExampleCache:
    """Caption rows in memory, and on disk when `folder` is given."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._rows: dict[str, CaptionResult] = {}
        self._lock = threading.Lock()

    @classmethod
    def on_disk(cls) -> ExampleCache:
        return cls(cache_root() / "example-captions")

    def lookup(self, digest: str, captioners: Mapping[str, Captioner], settings: DecodeSettings) -> dict[str, CaptionResult]:
        """The cached captions of this image by the given variants, by variant id (missing ones absent)."""
        found = {}
        for variant_id, captioner in captioners.items():
            key = _key(digest, captioner, settings)
            if key is not None and (result := self._get(key)) is not None:
                found[variant_id] = result
        return found

    def store(self, digest: str, captioner: Captioner, settings: DecodeSettings, result: CaptionResult) -> None:
        """Keep a caption (failures are not kept: the next try may succeed)."""
        key = _key(digest, captioner, settings)
        if key is None or result.caption is None:
            return
        with self._lock:
            self._rows[key] = result
        if self.folder is not None:
            self._write(key, result)

    def _get(self, key: str) -> CaptionResult | None:
        with self._lock:
            if key in self._rows:
                return self._rows[key]
        if self.folder is None:
            return None
        try:
            row = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            # JSON has lists where the result has tuples (its notes)
            result = CaptionResult(**{name: tuple(v) if isinstance(v, list) else v for name, v in row.items()})
        except (OSError, ValueError, TypeError):  # absent, or half-written by a process that died
            return None
        with self._lock:
            self._rows[key] = result
        return result

    def _write(self, key: str, result: CaptionResult) -> None:
        try:
            # readers see the whole row or none; readable by all users of a shared cache
            write_atomically(self.folder / f"{key}.json", json.dumps(asdict(result)), permissions=0o644)
        except OSError as error:  # a read-only or full disk costs the restart its head start, nothing else
            log.warning("example caption not written to disk: %s", error)


def _key(digest: str, captioner: Captioner, settings: DecodeSettings) -> str | None:
    """None for a variant that cannot load: its card says why, and there is nothing to cache."""
    try:
        fingerprint = captioner.fingerprint
    except VariantUnavailable:
        return None
    what = f"{FORMAT}\n{digest}\n{fingerprint}\n{captioner.preprocessing_key}\n{captioner.own_settings(settings)!r}"
    return hashlib.sha256(what.encode()).hexdigest()


def caption_examples(cache: ExampleCache, images: Mapping[str, Image.Image], captioners: Mapping[str, Captioner],
                     settings: DecodeSettings, *, batched: bool | None = None) -> int:
    """Caption every image (by digest) with every variant whose row is missing; returns rows added.

    On a CPU (default): image by image as background work (`stream_captions(background=True)`:
    any person's caption goes first). On a GPU (`batched`, default when no captioner is on a CPU),
    which one image leaves mostly idle: every missing image in one batch per variant.
    """
    if batched is None:
        batched = all(captioner.device.type != "cpu" for captioner in captioners.values())
    added = 0
    if batched:
        for variant_id, captioner in captioners.items():
            missing = {d: image for d, image in images.items() if not cache.lookup(d, {variant_id: captioner}, settings)}
            for digest, result in zip(missing, _caption_batch(variant_id, captioner, list(missing.values()), settings)):
                cache.store(digest, captioner, settings, result)
                added += result.caption is not None
        return added
    for digest, image in images.items():
        cached = cache.lookup(digest, captioners, settings)
        missing = {vid: captioner for vid, captioner in captioners.items() if vid not in cached}
        for result in stream_captions(missing, image, settings, background=True):
            cache.store(digest, captioners[result.variant_id], settings, result)
            added += result.caption is not None
    return added


def _caption_batch(variant_id: str, captioner: Captioner, images: list[Image.Image],
                   settings: DecodeSettings) -> list[CaptionResult]:
    """One generate() for all images; the time per image is the batch's share. Failures cache nothing."""
    if not images:
        return []
    start = time.perf_counter()
    try:
        captions = captioner.caption_with_ids(images, settings)
    except Exception as error:  # the examples are a convenience: the app works without their rows
        log.warning("%s: examples not captioned in a batch (%s)", variant_id, error)
        return []
    seconds = (time.perf_counter() - start) / len(images)
    return [CaptionResult(variant_id, caption, seconds, untrained=captioner.untrained, int8=captioner.quantize_int8,
                          token_ids=token_ids)
            for caption, token_ids in captions]


def cached_then_live(
    cache: ExampleCache,
    captioners: Mapping[str, Captioner],
    image: Image.Image,
    settings: DecodeSettings,
    live: Callable[[Sequence[str], Image.Image, DecodeSettings], Iterator[CaptionResult]],
    keep: Container[str] = (),
) -> tuple[list[CaptionResult], Iterator[CaptionResult]]:
    """Every variant's caption of `image`: the cached ones now, and the others as they finish
    (`live(variant_ids, image, settings)`, started when first iterated). Live captions of an image
    whose digest is in `keep` (the examples) are cached: on ZeroGPU that is how examples get
    cached, on first use."""
    digest = image_digest(image)
    cached = cache.lookup(digest, captioners, settings)
    missing = [vid for vid in captioners if vid not in cached]

    def rest() -> Iterator[CaptionResult]:
        if not missing:
            return
        for result in live(missing, image, settings):
            if digest in keep:
                cache.store(digest, captioners[result.variant_id], settings, result)
            yield result

    return list(cached.values()), rest()
