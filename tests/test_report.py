"""`python -m cxrcap report` on the real X-rays of ../shared/data/cxr-examples, with tiny random variants."""

import csv
import json
import shutil

import pytest
from PIL import Image

from cxrcap import metrics
from cxrcap.__main__ import main
from cxrcap.report import CONSTANT, RANDOM, BaselinePool, baseline_predictions, best_matching_caption

OUTPUT_FILES = {
    "predictions.csv", "predictions.json", "results.md", "results.csv", "results.json",
    "metrics.png", "metrics.svg", "qualitative.png", "qualitative.svg",
}
VARIANT_IDS = ["git-base", "git-base-ft", "blip-base", "blip-base-ft"]
FAST = ["--bootstrap", "30", "--max-new-tokens", "6", "--qualitative", "2"]


def report(data, out, *extra: str) -> int:
    return main(["report", "--data", str(data), "--out", str(out), *FAST, *extra])


def read_predictions(out) -> list[dict]:
    with (out / "predictions.csv").open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def read_rows(out) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads((out / "results.json").read_text())["rows"]}


@pytest.fixture(scope="module")
def tiny_report(cxr_examples_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    exit_code = report(cxr_examples_dir, out, "--tiny-random", "--limit", "5", "--beams", "2")
    return out, exit_code


def test_writes_every_file_with_one_row_per_variant_and_baseline(tiny_report):
    out, exit_code = tiny_report
    assert exit_code == 0
    assert {path.name for path in out.iterdir()} == OUTPUT_FILES
    rows = read_rows(out)
    assert list(rows) == [*VARIANT_IDS, CONSTANT, RANDOM]
    for name in VARIANT_IDS:
        assert rows[name]["status"] == "ok" and rows[name]["untrained"] is True
        assert rows[name]["label"].endswith("(untrained)")
        assert rows[name]["settings"] == "beam search (2 beams), at most 6 new tokens"
    assert all(row["n_images"] == 5 for row in rows.values())
    for name in ("metrics", "qualitative"):
        with Image.open(out / f"{name}.png") as png:
            assert png.width > 1000 and png.height > 500
        assert "<svg" in (out / f"{name}.svg").read_text()[:500]
    markdown = (out / "results.md").read_text()
    assert "untrained tiny random weights" in markdown and "| GIT base (untrained) | 5 |" in markdown
    assert "ROUGE-Lsum" in markdown and "Finding F1" in markdown and "rouge_score" in markdown


def test_table_equals_the_metrics_recomputed_from_predictions_csv(tiny_report):
    out, _ = tiny_report
    predictions = read_predictions(out)
    assert list(predictions[0]) == ["id", "reference", *VARIANT_IDS, CONSTANT, RANDOM]
    references = [row["reference"] for row in predictions]
    json_rows = read_rows(out)
    with (out / "results.csv").open(newline="", encoding="utf-8") as file:
        csv_rows = {row["name"]: row for row in csv.DictReader(file)}
    markdown = (out / "results.md").read_text()
    for name in [*VARIANT_IDS, CONSTANT, RANDOM]:
        expected = metrics.corpus_scores([row[name] for row in predictions], references)
        assert set(expected) == set(json_rows[name]["scores"])
        for key, value in expected.items():
            if value is None:  # finding F1 where no caption names a finding: null, an empty cell, n/a
                assert json_rows[name]["scores"][key] is None and csv_rows[name][key] == ""
                continue
            assert json_rows[name]["scores"][key] == pytest.approx(value, abs=1e-12)
            assert float(csv_rows[name][key]) == pytest.approx(value, abs=1e-12)
            low, high = json_rows[name]["ci"][key]
            assert low <= value + 1e-9 and value <= high + 1e-9
            assert f"{value:.3f} [{low:.2f}, {high:.2f}]" in markdown
        without = metrics.pairs_without_findings([row[name] for row in predictions], references)
        assert json_rows[name]["pairs_without_findings"] == without == int(csv_rows[name]["pairs_without_findings"])
        assert f"{json_rows[name]['label']} {without} of 5" in markdown


def test_baselines_never_look_at_the_image(tiny_report, cxr_examples_dir):
    out, _ = tiny_report
    predictions = read_predictions(out)
    assert len({row[CONSTANT] for row in predictions}) == 1
    with (cxr_examples_dir / "examples.csv").open(newline="", encoding="utf-8") as file:
        captions = {row["file"]: row["caption"] for row in csv.DictReader(file)}
    assert predictions[0][CONSTANT] in captions.values()
    # cxr-examples has no split column: the pool is the split itself, the random draw never the image's own row.
    assert all(row[RANDOM] in captions.values() for row in predictions)
    markdown = (out / "results.md").read_text()
    assert "no other split" in markdown and "98 captions" in markdown


def test_constant_caption_is_the_best_mean_rouge1_match_as_the_table_scores_it():
    pool = [
        "chest x-ray showing right pleural effusion",
        "chest x-ray showing pneumothorax",
        "Chest X-ray, normal.",
        "CT of the abdomen with contrast",
        "chest x-ray showing cardiomegaly and effusion",
        "lateral view of the knee",
    ]
    chosen = best_matching_caption(pool)

    def mean_rouge1(candidate):
        others = list(pool)
        others.remove(candidate)
        return sum(metrics.score(candidate, other)["rouge1"] for other in others) / len(others)

    best = max(pool, key=mean_rouge1)
    assert chosen == best
    assert mean_rouge1(chosen) > mean_rouge1("lateral view of the knee")


def test_random_baseline_is_seeded_and_skips_the_images_own_caption():
    pool = BaselinePool(captions=["a", "b", "c"], ids=["1", "2", "3"], description="three captions")
    first = baseline_predictions(pool, ["1", "2", "3"] * 20, seed=0)
    assert first == baseline_predictions(pool, ["1", "2", "3"] * 20, seed=0)
    drawn = first[RANDOM][0]
    assert all(caption != own for caption, own in zip(drawn, ["a", "b", "c"] * 20))
    assert set(drawn) == {"a", "b", "c"}
    assert baseline_predictions(pool, ["1", "2", "3"] * 20, seed=1)[RANDOM][0] != drawn


def test_unavailable_variant_is_listed_with_its_reason(cxr_examples_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    monkeypatch.setenv("CXRCAP_SOURCE_GIT_BASE_FT", str(empty))
    out = tmp_path / "out"
    assert report(cxr_examples_dir, out, "--variants", "git-base-ft", "--limit", "3") == 1
    assert {path.name for path in out.iterdir()} == OUTPUT_FILES
    rows = read_rows(out)
    assert rows["git-base-ft"]["status"] == "unavailable" and rows["git-base-ft"]["scores"] == {}
    assert "has no readable model config" in rows["git-base-ft"]["reason"]
    assert "python -m finetune --family git" in rows["git-base-ft"]["reason"]
    assert rows[CONSTANT]["status"] == rows[RANDOM]["status"] == "ok"
    assert "git-base-ft" not in read_predictions(out)[0]
    markdown = (out / "results.md").read_text()
    assert "| GIT fine-tuned | – | unavailable |" in markdown
    assert "## Unavailable" in markdown and str(empty) in markdown


def test_missing_and_unreadable_images_are_counted_not_fatal(cxr_examples_dir, tmp_path):
    folder = tmp_path / "xrays"
    folder.mkdir()
    with (cxr_examples_dir / "examples.csv").open(newline="", encoding="utf-8") as file:
        real = [row for row in csv.DictReader(file) if row["file"].endswith(".jpg")][:3]
    for row in real:
        shutil.copy(cxr_examples_dir / row["file"], folder / row["file"].split("/")[-1])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file_name", "caption", "license"])
        writer.writerows((row["file"].split("/")[-1], row["caption"], row["license"]) for row in real)
        writer.writerow(["missing.png", "PA chest X-ray; finding: pneumonia", "CC BY 4.0"])
        writer.writerow(["broken.png", "AP chest X-ray; no finding", "CC BY 4.0"])
    out = tmp_path / "out"

    assert report(folder, out, "--tiny-random", "--variants", "git-base") == 0
    document = json.loads((out / "results.json").read_text())
    assert document["n_images"] == 3
    assert document["missing_images"] == ["missing.png"]
    assert list(document["unreadable_images"]) == ["broken.png"]
    assert [row["id"] for row in read_predictions(out)] == [row["file"].split("/")[-1] for row in real]
    markdown = (out / "results.md").read_text()
    assert "3 images evaluated (2 not evaluated: 1 missing, 1 unreadable)" in markdown
    assert "- missing.png: image file missing" in markdown and "- broken.png: " in markdown


def test_from_predictions_rescores_the_csv_without_generating(tiny_report, cxr_examples_dir, tmp_path):
    out, _ = tiny_report
    edited = read_predictions(out)
    for row in edited:
        row["git-base"] = row["reference"]  # a perfect caption: the table must follow the file
    source = tmp_path / "predictions.csv"
    with source.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(edited[0]))
        writer.writeheader()
        writer.writerows(edited)

    rescored = tmp_path / "rescored"
    assert report(cxr_examples_dir, rescored, "--tiny-random", "--limit", "5", "--from-predictions", str(source)) == 0
    rows, before = read_rows(rescored), read_rows(out)
    assert rows["git-base"]["scores"]["rouge1"] == pytest.approx(1.0)
    assert rows["git-base"]["scores"]["bleu"] == pytest.approx(1.0)
    assert rows["git-base"]["seconds"] is None
    assert rows["blip-base"]["scores"] == before["blip-base"]["scores"]
    assert rows[CONSTANT]["scores"] == before[CONSTANT]["scores"]
    # A CSV with no predictions.json beside it: how its captions were made is unknown, and the table says so.
    assert rows["git-base"]["settings"] == "decoding settings unknown"
    document = json.loads((rescored / "results.json").read_text())
    assert document["num_beams"] is None and document["max_new_tokens"] is None
    assert "Decoding: decoding settings unknown (" in (rescored / "results.md").read_text()
    assert json.loads((rescored / "predictions.json").read_text())["num_beams"] is None


def test_from_predictions_labels_rows_as_the_captions_were_made_not_by_its_flags(
    tiny_report, cxr_examples_dir, tmp_path, capsys
):
    out, _ = tiny_report  # made with --tiny-random --beams 2 --max-new-tokens 6
    rescored = tmp_path / "rescored"
    code = main(["report", "--data", str(cxr_examples_dir), "--out", str(rescored), "--limit", "5",
                 "--bootstrap", "30", "--qualitative", "2", "--from-predictions", str(out / "predictions.csv")])
    assert code == 0
    before, after = read_rows(out), read_rows(rescored)
    for name in VARIANT_IDS:
        for key in ("label", "untrained", "settings", "scores"):
            assert after[name][key] == before[name][key], (name, key)
    original, again = (json.loads((folder / "results.json").read_text()) for folder in (out, rescored))
    assert (original["num_beams"], original["max_new_tokens"]) == (2, 6) and original["untrained_note"]
    for key in ("decoding", "num_beams", "max_new_tokens", "untrained_note"):
        assert again[key] == original[key], key
    assert "untrained tiny random weights" in (rescored / "results.md").read_text()
    assert (rescored / "predictions.json").read_text() == (out / "predictions.json").read_text()
    assert "made with untrained tiny random weights, beam search (2 beams)" in capsys.readouterr().err


def test_from_predictions_for_other_images_is_a_clear_error(tiny_report, cxr_examples_dir, tmp_path, capsys):
    out, _ = tiny_report
    code = report(cxr_examples_dir, tmp_path / "x", "--tiny-random", "--limit", "8",
                  "--from-predictions", str(out / "predictions.csv"))
    assert code == 2
    assert "has no predictions for 3 of the 8 images" in capsys.readouterr().err


def test_a_source_that_is_not_data_is_a_clear_error(tmp_path, capsys):
    assert report(tmp_path / "nowhere", tmp_path / "out", "--tiny-random") == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_extra_model_is_a_row_with_its_notes_and_only_its_answer_scored(cxr_examples_dir, tmp_path):
    out = tmp_path / "extra"
    assert report(cxr_examples_dir, out, "--tiny-random", "--limit", "3", "--variants", "git-base",
                  "--extra-model", "tiny-idefics3", "--batch-size", "2") == 0
    rows = read_rows(out)
    assert list(rows) == ["git-base", "extra", CONSTANT, RANDOM]
    extra = rows["extra"]
    assert extra["status"] == "ok" and extra["n_images"] == 3 and set(extra["scores"]) >= {"bleu", "rougeL", "meteor"}
    assert extra["label"] == "tiny random Idefics3 (SmolVLM's architecture) (extra) (untrained)"
    captions = [row["extra"] for row in read_predictions(out)]
    assert all(caption and len(caption.split()) <= 6 and "Describe the findings" not in caption for caption in captions)
    markdown = (out / "results.md").read_text()
    assert "- Not part of the study" in markdown and "- Licence: mit" in markdown
    assert "- Prompt: Describe the findings of this chest X-ray in one sentence." in markdown
def test_heatmaps_add_each_models_finding_words_to_the_qualitative_figure(tiny_report, cxr_examples_dir, tmp_path):
    out, _ = tiny_report
    edited = read_predictions(out)
    for row in edited:
        row["git-base"] = "small left pleural effusion and cardiomegaly"
        row["blip-base"] = "no acute findings"
    source = tmp_path / "predictions.csv"
    with source.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(edited[0]))
        writer.writeheader()
        writer.writerows(edited)
    plain, with_maps = tmp_path / "plain", tmp_path / "heatmaps"
    common = ("--tiny-random", "--limit", "2", "--from-predictions", str(source))
    assert report(cxr_examples_dir, plain, *common) == 0
    assert report(cxr_examples_dir, with_maps, *common, "--heatmaps", "--heatmap-method", "attention") == 0
    with Image.open(plain / "qualitative.png") as before, Image.open(with_maps / "qualitative.png") as after:
        assert after.width > before.width * 1.3  # a third column of overlays


def test_finding_word_overlays_name_the_words_and_say_why_when_there_are_none(cxr_examples_dir):
    from cxrcap.lineup import build_captioners
    from cxrcap.report import EvaluationSet, Row, finding_word_overlays

    image = Image.open(next((cxr_examples_dir / "images").glob("*.jpg"))).convert("RGB")
    evaluation = EvaluationSet(["x"], ["reference"], [image], [""], [], {})
    captioners = build_captioners(["git-base", "blip-base"], tiny_random=True)
    rows = [Row("git-base", "GIT base", "model"), Row("blip-base", "BLIP base", "model")]
    predictions = {"git-base": ["left effusion, cardiomegaly and effusion"], "blip-base": ["no acute findings"]}
    (panel,) = finding_word_overlays(captioners, evaluation, predictions, rows, 4, "attention")
    assert [word for word, _ in panel["git-base"]] == ["effusion", "cardiomegaly"]
    assert all(overlay.size == image.size for _, overlay in panel["git-base"])
    assert panel["blip-base"] == "the caption names no finding"
