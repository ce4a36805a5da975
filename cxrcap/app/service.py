"""What the app does, without the app: uploads in, streamed comparisons out.

`app.py` only lays out components and wires them to a `CaptionService`; everything here
is plain Python, tested without a browser.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from .. import metrics
from ..captioner import Captioner, DecodeSettings, VariantUnavailable, env_flag, pick_device
from . import scratch, zerogpu
from .example_cache import ExampleCache, caption_examples, cached_then_live, image_digest
from .comparison import Comparison, clean_ground_truth
from ..images import ImageError, load_image
from ..lineup import build_captioners
from ..scheduler import stream_captions, warm_up
from ..wordnet import WordNetMissingError

log = logging.getLogger(__name__)

NO_IMAGE = "Upload a chest X-ray (PNG, JPEG or DICOM) or pick an example first."
# The decoding settings the app offers (its sliders) and its API accepts: lowest, highest.
BEAMS = (1, 8)
NEW_TOKENS = (5, 100)


class UserError(ValueError):
    """Something the user can fix; the message is shown as it is."""


def decode_settings(num_beams, max_new_tokens, prompt=None) -> DecodeSettings:
    try:
        return DecodeSettings(num_beams=int(num_beams), max_new_tokens=int(max_new_tokens), prompt=prompt or None)
    except (TypeError, ValueError) as error:
        raise UserError(f"Decoding settings: {error}") from None


class CaptionService:
    """The four captioners, loaded once at start-up, and what the app asks of them.

    Fast (int8) captions run on a CPU only; their default is `CXRCAP_INT8`, and a request may ask
    for the other kind (those captioners load on first use). The examples' captions are cached
    (`example_cache`): after the warm-up, in the background (a person's request goes first), or,
    on ZeroGPU, when first asked for.

    The extra slot (`extra_model`, see `cxrcap.extra`) loads in the background after the study's
    four are warm; until it is ready its card says so, and no request waits for it.
    """

    def __init__(self, variant_ids: list[str], *, tiny_random: bool = False, public_files: Iterable[str] = (),
                 example_cache: ExampleCache | None = None, extra_model: str | None = None,
                 extra_prompt: str | None = None):
        self._example_files = list(public_files)
        self.int8_available = pick_device().type == "cpu"
        self.int8_default = self.int8_available and env_flag("CXRCAP_INT8", False)
        self._variant_ids = list(variant_ids)
        self._captioner_sets = {self.int8_default: build_captioners(variant_ids, tiny_random=tiny_random,
                                                                    quantize_int8=self.int8_default)}
        self._sets_lock = threading.Lock()
        # One extra captioner (never int8) beside every set of the four: {} or {"extra": ...}.
        self._extra = build_captioners([], tiny_random=tiny_random, extra_model=extra_model, extra_prompt=extra_prompt)
        self._warm = threading.Event()  # the four are loaded and warm: the extra slot may load
        self.tiny_random = tiny_random
        self.example_cache = example_cache if example_cache is not None else ExampleCache.on_disk()
        self._example_digests: set[str] = set()
        self.examples_cached = threading.Event()  # set once every example has its rows (or will not get them)
        # On ZeroGPU this runs in a process lent a GPU for the call (only picklable values cross over).
        self._caption_now = zerogpu.gpu(self._caption_now, zerogpu.caption_seconds)

    @property
    def variant_ids(self) -> list[str]:
        return [*self._variant_ids, *self._extra]

    @property
    def extra_prompt(self) -> str | None:
        """The extra slot's default prompt (None without an extra model)."""
        return next((extra.prompt for extra in self._extra.values()), None)

    @property
    def captioners(self) -> dict[str, Captioner]:
        """The study's captioners of the default kind (fp32, or int8 where that is the default)."""
        return self._captioner_sets[self.int8_default]

    def captioners_for(self, int8: bool) -> dict[str, Captioner]:
        """Every captioner a request uses: the study's of the asked kind, then the extra slot."""
        if int8 and not self.int8_available:
            raise UserError("Fast (int8) captions run on a CPU only; this app runs on a GPU.")
        with self._sets_lock:
            if int8 not in self._captioner_sets:
                self._captioner_sets[int8] = build_captioners(self._variant_ids, tiny_random=self.tiny_random,
                                                              quantize_int8=int8)
            return {**self._captioner_sets[int8], **self._extra}

    def start(self) -> threading.Thread:
        """Load WordNet, then load and warm every variant, in the background, so the page is up at once;
        the extra slot loads on a thread of its own once the four are warm."""
        thread = threading.Thread(target=self._load_all, name="cxrcap-load", daemon=True)
        thread.start()
        for extra in self._extra.values():
            extra.load_in_background(before=self._warm.wait)
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

        try:
            if zerogpu.ON_ZERO_GPU:  # load (onto "cuda", as ZeroGPU wants) but caption nothing without a GPU
                self._load_only()
            else:
                for result in warm_up(self.captioners):
                    if result.error:
                        log.warning("%s", result.error)
        finally:
            self._warm.set()
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

    @staticmethod
    def receive_upload(path: str | os.PathLike | None) -> Image.Image:
        """Decode an uploaded file (or a gallery example's).

        The file stays where Gradio put it: identical uploads share one copy, which requests
        still in the queue may need. Gradio deletes it some minutes after its last upload
        (`delete_cache`), and the app's scratch folder goes when the app stops (`scratch`).
        """
        if not path:
            raise UserError(NO_IMAGE)
        try:
            return load_image(path)
        except ImageError as error:
            raise UserError(_without_folders(str(error), path)) from None

    @staticmethod
    def check_ready(image: Image.Image | None, problem: str = "") -> None:
        """Before a caption job: say why there is nothing to caption (a rejected upload's reason,
        or no image yet) instead of starting one."""
        if problem:
            raise UserError(problem)
        if image is None:
            raise UserError(NO_IMAGE)

    def compare(
        self, image: Image.Image | None, ground_truth: str | None, num_beams=1, max_new_tokens=30, int8=None,
        prompt=None,
    ) -> Iterator[tuple[Comparison, str | None]]:
        """Yield the comparison each time a variant finishes (cached ones all at once, first), the
        first time with a notice for the user or None (a ground truth too long to score whole).
        `prompt`: what the extra slot's model is asked (None or empty: its default)."""
        self.check_ready(image)
        settings = decode_settings(num_beams, max_new_tokens, prompt)
        ground_truth, notice = clean_ground_truth(ground_truth)
        comparison = Comparison(ground_truth, settings, ground_truth_notice=notice)
        int8 = self.int8_default if int8 is None else bool(int8)
        captioners = self.captioners_for(int8)
        live = functools.partial(self._caption_now, int8=int8)
        cached, rest = cached_then_live(self.example_cache, captioners, image, settings, live, self._example_digests)
        try:
            for result in cached:  # one update with every cached card: a cached example shows at once
                comparison.add(result)
            yield comparison, notice  # the notice once, not once per variant
            for result in rest:
                comparison.add(result)
                yield comparison, None
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
        """The current comparison as a slide (PNG) and a table (CSV), both with the image's credit,
        written into the scratch folder, where Gradio serves them and deletes them with its cache."""
        if image is None or comparison is None or not comparison.outcomes:
            raise UserError("Caption an X-ray first; then its comparison can be downloaded.")
        root = scratch.folder()
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="comparison-", dir=root))
        slide, table = folder / "cxrcap-comparison.png", folder / "cxrcap-comparison.csv"
        comparison.to_slide(image, credit).save(slide)
        table.write_text(comparison.to_csv(credit), encoding="utf-8")
        return [str(slide), str(table)]


def _without_folders(message: str, path: str | os.PathLike) -> str:
    """A message for the user names an upload by its file name only, never by the server's folder."""
    return message.replace(os.fspath(path), Path(path).name)
