"""`python -m cxrcap data` (cxrcap.cli.data) on the real ROCO captions in ../shared/data."""

import argparse
import csv

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
    monkeypatch.setattr(data.os, "replace", fail)
    assert cli(["--roco", str(roco_dir), "--split", "test", "--out", str(out)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert out.read_text() == "previous\n" and [path.name for path in tmp_path.iterdir()] == ["kept.csv"]
