"""Shared fixtures: the real data beside the repository, and tiny variants."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ROCO = SHARED_DATA / "roco"
CXR_EXAMPLES = SHARED_DATA / "cxr-examples"


@pytest.fixture(scope="session")
def roco_dir() -> Path:
    if not ROCO.is_dir():
        pytest.fail(f"real ROCO captions expected at {ROCO} (see ../shared/data/README.md)")
    return ROCO


@pytest.fixture(scope="session")
def cxr_examples_dir() -> Path:
    if not CXR_EXAMPLES.is_dir():
        pytest.fail(f"real chest X-rays expected at {CXR_EXAMPLES} (see ../shared/data/README.md)")
    return CXR_EXAMPLES


@pytest.fixture(scope="session")
def cxr_image(cxr_examples_dir) -> Path:
    """One real chest X-ray (JPEG, 1024 px) from the shared examples."""
    return cxr_examples_dir / "images" / "covid_b343e657.jpg"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tiny variants and the WordNet copy are built into a per-run cache, never the user's."""
    import os

    os.environ["CXRCAP_CACHE"] = str(tmp_path_factory.mktemp("cxrcap-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_sources(isolated_cache) -> dict[str, str]:
    from cxrcap.tiny import tiny_sources as build

    return build()


@pytest.fixture(scope="module")
def captioners(tiny_sources):
    """The four tiny variants in fp32 (int8 off whatever the environment says); a module may define its own."""
    from cxrcap.captioner import Captioner
    from cxrcap.variants import VARIANT_IDS

    return {vid: Captioner(vid, tiny_sources[vid], untrained=True, quantize_int8=False) for vid in VARIANT_IDS}


@pytest.fixture(scope="session")
def reviews_db(tmp_path_factory) -> Path:
    """The reviews database of the app that `app_url` runs (never the repository's data/)."""
    return tmp_path_factory.mktemp("reviews") / "reviews.sqlite"


@pytest.fixture(scope="session")
def app_url(tiny_sources, reviews_db, tmp_path_factory):
    """`python app.py --tiny-random` on a free loopback port, as a user of a fresh clone starts it."""
    import os

    from benchmarks.app_process import running_app

    env = dict(os.environ, CXRCAP_RESULTS=str(tmp_path_factory.mktemp("no-results")),  # the shipped gallery
               CXRCAP_REVIEWS=str(reviews_db))
    env.pop("CXRCAP_EXAMPLES", None)
    with running_app(["--tiny-random"], env, tmp_path_factory.mktemp("app") / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def roco_mirror(tmp_path_factory, roco_dir, cxr_examples_dir):
    """A local mirror of eltorio/ROCO-radiology (tests/hub_mirrors.py), one per test module: the hub
    cache is shared, so a module's tests read splits of their own."""
    from hub_mirrors import study_mirror

    return study_mirror(tmp_path_factory.mktemp("ROCO-radiology"), roco_dir, cxr_examples_dir, concepts=False)


@pytest.fixture(scope="module")
def rocov2_mirror(tmp_path_factory, roco_dir, cxr_examples_dir):
    """A local mirror of eltorio/ROCOv2-radiology (with its curated concepts), one per test module."""
    from hub_mirrors import study_mirror

    return study_mirror(tmp_path_factory.mktemp("ROCOv2-radiology"), roco_dir, cxr_examples_dir, concepts=True)
