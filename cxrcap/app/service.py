"""What the app does, without the app: uploads in, streamed comparisons out.

`app.py` only lays out components and wires them to a `CaptionService`; everything here
is plain Python, tested without a browser.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from .. import metrics
from ..captioner import (
    Captioner, DecodeSettings, VariantUnavailable, build_captioners, env_flag, pick_device,
    stream_captions, warm_up,
)
from . import zerogpu
from .example_cache import ExampleCache, caption_examples, cached_then_live, image_digest
from .comparison import Comparison, clean_ground_truth
from ..images import ImageError, load_image
from ..wordnet import WordNetMissingError

log = logging.getLogger(__name__)

# Gradio stores identical uploads at one content-addressed path, which the first request
# deletes; requests already queued with that path get the decoded pixels (never the file
# or its DICOM header) from memory for a short while.
RECENT_UPLOADS = 4
RECENT_UPLOAD_SECONDS = 120
# Exported slides show the X-ray: Gradio serves its own copy, ours go after this long.
EXPORT_SECONDS = 600


class UserError(ValueError):
    """Something the user can fix; the message is shown as it is."""


def decode_settings(num_beams, max_new_tokens) -> DecodeSettings:
    try:
        return DecodeSettings(num_beams=int(num_beams), max_new_tokens=int(max_new_tokens))
    except (TypeError, ValueError) as error:
        raise UserError(f"Decoding settings: {error}") from None


class CaptionService:
    """The four captioners, loaded once at start-up, and what the app asks of them.

    Fast (int8) captions run on a CPU only; their default is `CXRCAP_INT8`, and a request may ask
    for the other kind (those captioners load on first use). The examples' captions are cached
    (`example_cache`): after the warm-up, in the background (a person's request goes first), or,
    on ZeroGPU, when first asked for.
    """

    def __init__(self, variant_ids: list[str], *, tiny_random: bool = False, public_files: Iterable[str] = (),
                 example_cache: ExampleCache | None = None):
        # Gradio caches files by content: an upload identical to a gallery example shares the
        # gallery's cached copy, which must survive the request.
        self._public_digests = {_digest(path) for path in public_files}
        self._example_files = list(public_files)
        self.int8_available = pick_device().type == "cpu"
        self.int8_default = self.int8_available and env_flag("CXRCAP_INT8", False)
        self._variant_ids = list(variant_ids)
        self._captioner_sets = {self.int8_default: build_captioners(variant_ids, tiny_random=tiny_random,
                                                                    quantize_int8=self.int8_default)}
        self._sets_lock = threading.Lock()
        self.tiny_random = tiny_random
        self.example_cache = example_cache if example_cache is not None else ExampleCache.on_disk()
        self._example_digests: set[str] = set()
        self.examples_cached = threading.Event()  # set once every example has its rows (or will not get them)
        # On ZeroGPU this runs in a process lent a GPU for the call (only picklable values cross over).
        self._caption_now = zerogpu.gpu(self._caption_now)
        self.exports = Path(tempfile.mkdtemp(prefix="cxrcap-exports-"))
        self._recent_uploads: OrderedDict[str, tuple[float, Image.Image]] = OrderedDict()
        self._recent_lock = threading.Lock()

    @property
    def variant_ids(self) -> list[str]:
        return list(self._variant_ids)

    @property
    def captioners(self) -> dict[str, Captioner]:
        """The captioners of the default kind (fp32, or int8 where that is the default)."""
        return self._captioner_sets[self.int8_default]

    def captioners_for(self, int8: bool) -> dict[str, Captioner]:
        if int8 and not self.int8_available:
            raise UserError("Fast (int8) captions run on a CPU only; this app runs on a GPU.")
        with self._sets_lock:
            if int8 not in self._captioner_sets:
                self._captioner_sets[int8] = build_captioners(self._variant_ids, tiny_random=self.tiny_random,
                                                              quantize_int8=int8)
            return self._captioner_sets[int8]

    def start(self) -> threading.Thread:
        """Load WordNet, then load and warm every variant, in the background, so the page is up at once."""
        thread = threading.Thread(target=self._load_all, name="cxrcap-load", daemon=True)
        thread.start()
        return thread

    def _load_all(self) -> None:
        # One after the other: parsing WordNet holds the interpreter for ~2 s, which would stall
        # every torch call of a caption running meanwhile.
        try:
            metrics.warm_up(background=False)
        except Exception as error:  # the first score says it again; the variants still load
            log.warning("WordNet (for METEOR) did not load: %s", error)
        # Gradio reads matplotlib's backend around every event; left to be resolved, the first read
        # imports pyplot, ~1 s the first click would wait for. The app draws only to files anyway.
        import matplotlib

        matplotlib.use("agg")

        if zerogpu.ON_ZERO_GPU:  # load (onto "cuda", as ZeroGPU wants) but caption nothing without a GPU
            self._load_only()
        else:
            for result in warm_up(self.captioners):
                if result.error:
                    log.warning("%s", result.error)
        self._cache_examples()

    def _load_only(self) -> None:
        for captioner in self.captioners.values():
            try:
                captioner.load()
            except VariantUnavailable as error:
                log.warning("%s", error)

    def _cache_examples(self) -> None:
        """Eagerly on a CPU or a dedicated GPU; on ZeroGPU only note the examples, cached on first use."""
        try:
            images = {}
            for path in self._example_files:
                try:
                    image = load_image(path)
                except ImageError as error:
                    log.warning("example %s not cached: %s", Path(path).name, error)
                    continue
                images[image_digest(image)] = image
            self._example_digests = set(images)
            if not zerogpu.ON_ZERO_GPU:
                added = caption_examples(self.example_cache, images, self.captioners, DecodeSettings())
                log.info("example cache: %d captions added for %d examples", added, len(images))
        except Exception:  # the cache only speeds things up: the app works without it
            log.exception("the examples could not be cached")
        finally:
            self.examples_cached.set()

    def receive_upload(self, path: str | os.PathLike | None) -> Image.Image:
        """Decode an uploaded file, then delete it: uploads (and DICOM headers) are not kept."""
        if not path:
            raise UserError("Upload a chest X-ray (PNG, JPEG or DICOM) or pick an example.")
        if not _is_upload(path):
            return self._decode(path)
        key = str(Path(path).resolve())
        with self._recent_lock:
            now = time.monotonic()
            for old_key in [k for k, (at, _) in self._recent_uploads.items() if now - at > RECENT_UPLOAD_SECONDS]:
                del self._recent_uploads[old_key]
            if key in self._recent_uploads and not Path(path).exists():
                return self._recent_uploads[key][1]
            try:
                image = self._decode(path)
            finally:
                if _digest(path) not in self._public_digests:
                    Path(path).unlink(missing_ok=True)
            self._recent_uploads[key] = (now, image)
            while len(self._recent_uploads) > RECENT_UPLOADS:
                self._recent_uploads.popitem(last=False)
            return image

    @staticmethod
    def _decode(path) -> Image.Image:
        try:
            return load_image(path)
        except ImageError as error:
            raise UserError(str(error)) from None

    def compare(
        self, image: Image.Image | None, ground_truth: str | None, num_beams=1, max_new_tokens=30, int8=None
    ) -> Iterator[tuple[Comparison, str | None]]:
        """Yield the comparison (and any notice for the user) each time a variant finishes."""
        if image is None:
            raise UserError("Upload a chest X-ray (PNG, JPEG or DICOM) or pick an example first.")
        settings = decode_settings(num_beams, max_new_tokens)
        ground_truth, notice = clean_ground_truth(ground_truth)
        comparison = Comparison(ground_truth, settings)
        int8 = self.int8_default if int8 is None else bool(int8)
        captioners = self.captioners_for(int8)
        live = functools.partial(self._caption_now, int8=int8)
        cached, rest = cached_then_live(self.example_cache, captioners, image, settings, live, self._example_digests)
        try:
            for result in cached:  # one update with every cached card: a cached example shows at once
                comparison.add(result)
            yield comparison, notice
            for result in rest:
                comparison.add(result)
                yield comparison, notice
        except WordNetMissingError as error:  # a broken install: say how to fix it
            raise UserError(str(error)) from None

    def _caption_now(self, variant_ids, image: Image.Image, settings: DecodeSettings, int8: bool):
        """Caption with the given variants now, yielding each result as it finishes (`stream_captions`)."""
        captioners = self.captioners_for(int8)
        yield from stream_captions({vid: captioners[vid] for vid in variant_ids}, image, settings)

    def caption_rows(self, path, ground_truth=None, num_beams=1, max_new_tokens=30) -> list[dict]:
        """The API endpoint: one file in, one row per variant out (last streamed state)."""
        image = self.receive_upload(path)
        comparison = None
        for comparison, _ in self.compare(image, ground_truth, num_beams, max_new_tokens):
            pass
        return comparison.rows()

    def export(self, image: Image.Image | None, comparison: Comparison | None, credit: str = "") -> list[str]:
        """The current comparison as a slide (PNG, with the image's credit) and a table (CSV)."""
        if image is None or comparison is None or not comparison.outcomes:
            raise UserError("Caption an X-ray first; then its comparison can be downloaded.")
        self._delete_old_exports()
        folder = Path(tempfile.mkdtemp(prefix="comparison-", dir=self.exports))
        slide, table = folder / "cxrcap-comparison.png", folder / "cxrcap-comparison.csv"
        comparison.to_slide(image, credit).save(slide)
        table.write_text(comparison.to_csv(), encoding="utf-8")
        return [str(slide), str(table)]

    def _delete_old_exports(self) -> None:
        cutoff = time.time() - EXPORT_SECONDS
        for folder in self.exports.glob("comparison-*"):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def _digest(path) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def _is_upload(path) -> bool:
    """Only files in Gradio's upload cache are deleted, never a user's or an example's."""
    upload_root = Path(os.environ.get("GRADIO_TEMP_DIR", Path(tempfile.gettempdir()) / "gradio")).resolve()
    return upload_root in Path(path).resolve().parents
