"""`python -m cxrcap data` (cxrcap.cli.data) on the real ROCO captions in ../shared/data and a local
mirror of eltorio/ROCOv2-radiology (tests/hub_mirrors.py)."""

import argparse
import csv

from cxrcap.__main__ import main
from cxrcap import files
from cxrcap.cli import data


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    return data.run(parser.parse_args(argv))


def test_cli_on_real_roco_writes_kept_rows(roco_dir, tmp_path, capsys):
    out = tmp_path / "kept.csv"
    assert cli(["--roco", str(roco_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train: absent" in printed
    assert "validation: 8180 rows read, 422 kept as chest X-rays; images: 0 found, 422 missing" in printed
    assert "test: 8179 rows read, 433 kept as chest X-rays; images: 0 found, 433 missing" in printed
    assert "scripts/fetch.py" in printed and "licences: CC BY " in printed
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 855 and {row["image"] for row in rows} == {""}
    assert list(rows[0]) == ["id", "split", "caption", "license", "credit", "image"]
    assert [path.name for path in tmp_path.iterdir()] == ["kept.csv"]  # no temporary file left


def test_cli_absent_split_and_failed_write_leave_nothing_half_written(roco_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "kept.csv"
    assert cli(["--roco", str(roco_dir), "--split", "train,validation", "--out", str(out)]) == 1
    assert "split 'train' is absent" in capsys.readouterr().err and not out.exists()
    out.write_text("previous\n")

    def fail(*args):
        raise OSError("disk full")
    monkeypatch.setattr(files.os, "replace", fail)  # the atomic write (cxrcap.files)
    assert cli(["--roco", str(roco_dir), "--split", "test", "--out", str(out)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert out.read_text() == "previous\n" and [path.name for path in tmp_path.iterdir()] == ["kept.csv"]


def test_data_cli_names_the_rule_and_counts_per_rule(rocov2_mirror, capsys):
    assert main(["data", "--roco", str(rocov2_mirror), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert f"local copy of a hub dataset at {rocov2_mirror}" in out
    assert "rule: concept (CONCEPT_RULE); concept rule 2, caption rule" in out and "agreement" in out
    assert "bytes:" in out and "stored in the cache" in out


def test_unreachable_hub_id_is_a_clear_error(capsys):
    assert main(["data", "--roco", "someone/not-here"]) == 1  # offline (HF_HUB_OFFLINE=1)
    error = capsys.readouterr().err
    assert error.startswith("error: someone/not-here: cannot resolve its data files") and "Traceback" not in error
