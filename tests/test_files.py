"""Files written whole or not at all, and known by their bytes."""

import hashlib
import stat

import pytest

from cxrcap.files import atomic_file, file_sha256, write_atomically


def test_a_write_replaces_the_file_whole_and_a_failed_one_leaves_it_and_no_temporary_file(tmp_path):
    path = tmp_path / "rows" / "a.json"  # its folder is made
    write_atomically(path, '{"caption": "clear lungs"}')
    assert path.read_text(encoding="utf-8") == '{"caption": "clear lungs"}'
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(path, encoding="utf-8") as file:
        file.write('{"capt')
        assert path.read_text(encoding="utf-8") == '{"caption": "clear lungs"}'  # readers still see the old one
        raise RuntimeError("disk full")
    assert path.read_text(encoding="utf-8") == '{"caption": "clear lungs"}'
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_bytes_text_and_the_permissions_a_shared_cache_needs(tmp_path):
    write_atomically(tmp_path / "image.png", b"\x89PNG", permissions=0o644)
    write_atomically(tmp_path / "export.csv", "é,ü\n")
    assert (tmp_path / "image.png").read_bytes() == b"\x89PNG"
    assert (tmp_path / "export.csv").read_bytes() == "é,ü\n".encode()
    assert stat.S_IMODE((tmp_path / "image.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "export.csv").stat().st_mode) == 0o600  # the temporary file's own: owner only


def test_a_files_sha256_is_that_of_its_bytes(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"DICM" * 1000)
    assert file_sha256(tmp_path / "x.dcm") == hashlib.sha256(b"DICM" * 1000).hexdigest()
