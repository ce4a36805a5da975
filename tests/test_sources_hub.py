"""cxrcap.sources.hub on local mirrors of eltorio/ROCO-radiology and eltorio/ROCOv2-radiology built
from real ROCO captions and real X-rays (tests/hub_mirrors.py): the rule by concepts, licences by
ROCO id, the cache."""

import csv
from pathlib import Path

import datasets

from cxrcap import sources
from cxrcap.sources import hub
from hub_mirrors import KEPT, MirrorRow, choose, features, roco_rows, write_mirror


def test_the_mirrors_load_through_datasets_with_the_hubs_features(roco_mirror, rocov2_mirror):
    for mirror, concepts in ((roco_mirror, False), (rocov2_mirror, True)):
        loaded = datasets.load_dataset(str(mirror))  # offline: HF_HUB_OFFLINE=1 (conftest)
        assert set(loaded) == {"train", "validation", "test"}
        assert loaded["test"].features == features(concepts)
        assert loaded["test"][0]["image"].size[0] > 100  # a real X-ray


def test_concept_rule_where_concepts_exist_and_a_second_run_reads_nothing(rocov2_mirror):
    first = sources.load_split(rocov2_mirror, "test")  # each test here reads its own split: the cache is shared
    assert first.rule == "concept" and first.chest_filtered
    assert first.kept == KEPT["test"] == len(first.dataset) and first.rows_read == 3 * KEPT["test"]
    assert set(first.rule_counts) == {"concept", "caption", "both"} and first.rule_counts["concept"] == KEPT["test"]
    assert first.reading["bytes_read"] > first.reading["kept_image_bytes"] > 0
    # ROCOv2 rows carry no licence of their own and no ROCO id to join: unknown, pointing at the card
    assert set(first.dataset["license"]) == {hub.UNKNOWN_HUB_LICENSE}
    second = sources.load_split(rocov2_mirror, "test")
    assert second.reading["bytes_read"] == 0
    assert second.dataset["id"] == first.dataset["id"] and second.reading["bytes_stored"] == first.reading["bytes_stored"]
    assert second.dataset[0]["image"].size == first.dataset[0]["image"].size


def test_roco_copy_gets_licences_by_roco_id_and_the_licence_filter(roco_mirror, roco_dir):
    plain = sources.load_split(roco_mirror, "test")
    assert plain.rule == "caption" and set(plain.licences) == {hub.UNKNOWN_HUB_LICENSE}
    joined = sources.load_split(roco_mirror, "test", licences=roco_dir)
    truth = {row["ROCO_ID"]: row["CC"] for row in csv.DictReader(
        (roco_dir / "test" / "radiology" / "licences.txt").open(encoding="utf-8"))}
    assert joined.dataset["license"] == [truth[row_id] for row_id in joined.dataset["id"]]
    assert all("PubMed Central" in credit for credit in joined.dataset["credit"])
    only = sources.load_split(roco_mirror, "test", licences=roco_dir / "test" / "radiology" / "licences.txt",
                           licence="cc by")
    assert set(only.dataset["license"]) == {"CC BY"}
    assert only.licence_dropped == joined.kept - only.kept > 0


def test_fixture(tmp_path, roco_dir, cxr_examples_dir):
    """A local copy of a hub dataset (parquet shards, README with its configs): one kept figure, two dropped."""
    images = sorted((cxr_examples_dir / "images").iterdir())
    rows = [MirrorRow(row_id, caption, cuis, image) for (row_id, caption, cuis), image
            in zip(choose(roco_rows(roco_dir, "test"), kept=1, dropped=2, concepts=False), images)]
    write_mirror(tmp_path, {"test": rows}, concepts=False, shards=1)
    assert isinstance(sources.open_source(tmp_path), hub.HubDataset) and sources.filters_chest_xrays(tmp_path)
    assert sources.describe_source(tmp_path) == f"local copy of a hub dataset at {tmp_path.resolve()}"
    assert sources.available_splits(tmp_path) == ["test"]
    split = sources.load_split(tmp_path, "test")
    assert (split.rows_read, split.kept, split.rule, split.missing_images) == (3, 1, "caption", [])
    row = split.dataset.cast_column("image", datasets.Image(decode=False))[0]
    assert (row["id"], row["caption"]) == (rows[0].image_id, rows[0].caption)
    assert row["license"] == hub.UNKNOWN_HUB_LICENSE
    assert row["credit"] == f"{hub.UNKNOWN_HUB_LICENSE}; {tmp_path.name} (a copy of a hub dataset)"
    assert Path(row["image"]["path"]).read_bytes() == rows[0].image.read_bytes()
