"""Who captions when: every request's variants, on worker threads shared by all requests.

Speed on a CPU (benchmarks/README.md has the measurements): a decoding step reads every decoder
weight for one token, so it is bound by memory bandwidth, which two cores streaming two models at
once use better than two threads on one model. `stream_captions` therefore captions two variants
at a time, each on one core, sharing the image's pre-processing between variants with the same
processor. Who waits for whom:

- requests queue for the shared workers (`_CaptionWorkers`) instead of oversubscribing the cores;
- a person's captions go before background work (the app's example cache), which runs on the same
  workers at normal priority: on the low-priority thread it stalled the app in 1 of 3 test runs
  (probably the interpreter lock held by a descheduled nice-10 thread), so that was reverted (#15);
- a `low_priority` captioner (the fifth slot) runs on a lane of its own at a lower CPU priority
  (`lower_this_threads_priority`), so the study's four never wait for it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, as_completed

import torch
from PIL import Image

from .captioner import CaptionResult, Captioner, DecodeSettings, StillLoading, VariantUnavailable, cap_caption
from .errors import first_line

log = logging.getLogger(__name__)
# torch's thread count as the process started (stream_captions' workers set their own, per
# thread, which also changes what torch.get_num_threads() reports afterwards).
_CPU_THREADS = torch.get_num_threads()
LOW_PRIORITY_NICE = 10  # Linux nice value of threads that must leave the cores to the study's captions (see benchmarks/README.md)


def stream_captions(
    captioners: dict[str, Captioner],
    image: Image.Image,
    settings: DecodeSettings = DecodeSettings(),
    *,
    workers: int | None = None,
    background: bool = False,
) -> Iterator[CaptionResult]:
    """Caption one image with every variant, yielding each result as soon as it is ready.

    Results come in completion order. Captioners with the same image processor share one
    pre-processing of the image. `workers` variants run at once, each on its share of the CPU
    threads (default: `CXRCAP_WORKERS`, else 2 when every captioner is on a CPU with 2+ threads,
    else 1). The worker threads are shared by all requests, so concurrent requests queue for
    them instead of oversubscribing the cores. A `low_priority` captioner (the extra slot) runs
    on a thread of its own at a lower CPU priority instead, so the four never wait for it.

    background: work nobody waits for (the app's example cache). Its variants always run on the
    worker threads, behind every caption a person asked for: one waiting for a worker is taken
    before any background one, so a request never waits longer than one variant's caption that
    had already started.
    """
    workers = workers or _default_workers(captioners)
    pixels = _SharedPixels(image)

    def run(variant_id: str, captioner: Captioner) -> CaptionResult:
        start = time.perf_counter()
        int8 = captioner.quantize_int8
        failed = functools.partial(CaptionResult, variant_id, None, 0.0, untrained=captioner.untrained, int8=int8,
                                   notes=captioner.notes(settings))
        try:
            token_ids = captioner.generate_ids(pixels.of(captioner), settings)
            (text,), (ids,) = captioner.decode(token_ids), captioner.content_ids(token_ids)
        except VariantUnavailable as error:
            return failed(error=str(error), unavailable=True, loading=isinstance(error, StillLoading))
        except Exception as error:  # one variant failing must not take the others down
            log.exception("%s failed to caption", variant_id)
            return failed(error=f"captioning failed ({type(error).__name__}: {first_line(error)})")
        caption, full_text = cap_caption(text, settings.max_new_tokens)
        return CaptionResult(variant_id, caption, time.perf_counter() - start, untrained=captioner.untrained, int8=int8,
                             full_text=full_text, notes=captioner.notes(settings),
                             token_ids=ids if full_text is None else ())  # a cut caption: its ids are unknown

    if workers <= 1 and not background:
        for variant_id, captioner in captioners.items():
            yield run(variant_id, captioner)
        return
    pool = _caption_workers(workers)
    futures = [(_low_priority_lane() if captioner.low_priority else pool).submit(run, vid, captioner, background=background)
               for vid, captioner in captioners.items()]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:  # the caller stopped early: do not start the variants it no longer waits for
        for future in futures:
            future.cancel()


def warm_up(captioners: dict[str, Captioner]) -> list[CaptionResult]:
    """Load every captioner and caption a blank image once, so the first real request pays no
    one-off costs (page faults on the weights, first-call set-up). It runs as requests do
    (`stream_captions`): with two or more workers, on the shared caption workers, so a request
    arriving meanwhile queues behind it instead of fighting it for the cores, which slows both
    several-fold on two cores; with one, on the calling thread."""
    return list(stream_captions(captioners, Image.new("RGB", (64, 64)), DecodeSettings(max_new_tokens=2)))


def lower_this_threads_priority() -> None:
    """Let the study's captions run first: on Linux, a thread's nice value is its own."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


def _default_workers(captioners: dict[str, Captioner]) -> int:
    value = os.environ.get("CXRCAP_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"CXRCAP_WORKERS must be a whole number of at least 1, not {value!r}")
        return int(value)
    on_cpu = all(captioner.device.type == "cpu" for captioner in captioners.values())
    return 2 if on_cpu and _CPU_THREADS >= 2 else 1


@functools.cache
def _caption_workers(workers: int) -> _CaptionWorkers:
    return _CaptionWorkers(workers, "caption")


@functools.cache
def _low_priority_lane() -> _CaptionWorkers:
    """One thread of its own for `Captioner.low_priority` captioners, at a lower CPU priority:
    it uses the cores the study's workers leave idle, and gives them back as soon as they need them."""
    return _CaptionWorkers(1, "low-priority", low_priority=True)


class _CaptionWorkers:
    """Long-lived threads, each running torch on CPU_THREADS // workers threads, taking caption
    jobs from one queue: a person's jobs first (in arrival order), then background ones."""

    _PERSON, _BACKGROUND = 0, 1

    def __init__(self, workers: int, name: str, low_priority: bool = False):
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._arrival = itertools.count()  # ties keep arrival order (and never compare jobs)
        for number in range(workers):
            threading.Thread(target=self._work, args=(max(1, _CPU_THREADS // workers), low_priority),
                             name=f"cxrcap-{name}_{number}", daemon=True).start()

    def submit(self, function, *args, background: bool = False) -> Future:
        future: Future = Future()
        rank = self._BACKGROUND if background else self._PERSON
        self._jobs.put((rank, next(self._arrival), future, function, args))
        return future

    def _work(self, threads: int, low_priority: bool) -> None:
        if low_priority:
            lower_this_threads_priority()
        torch.set_num_threads(threads)
        while True:
            _, _, future, function, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():  # cancelled while it waited
                continue
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)


class _SharedPixels:
    """One image's pixel values per distinct image processor, computed once (thread-safe)."""

    def __init__(self, image: Image.Image):
        self.image = image
        self._by_processor: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def of(self, captioner: Captioner) -> torch.Tensor:
        key = captioner.preprocessing_key
        with self._lock:
            if key not in self._by_processor:
                self._by_processor[key] = captioner.preprocess([self.image])
            return self._by_processor[key]
