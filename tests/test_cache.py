"""The score cache: round trip, damaged entries count as missing (with a note), atomic saves, a full disk."""

import errno

import numpy as np
import pytest

from dpo_doctor import cache as cache_mod
from dpo_doctor.cache import SCORE_KEYS, ScoreCache
from dpo_doctor.errors import UserError


def scores(n: int = 5) -> dict[str, np.ndarray]:
    return {"logp_chosen": np.linspace(-3, -1, n), "logp_rejected": np.full(n, np.nan),
            "len_chosen": np.arange(n, dtype=np.int64), "len_rejected": np.ones(n, np.int64)}


def test_round_trip_and_no_temp_left(tmp_path):
    c = ScoreCache(tmp_path)
    c.save("k", scores())
    got = c.load("k", length=5)
    assert set(got) == set(SCORE_KEYS)
    np.testing.assert_array_equal(got["logp_rejected"], scores()["logp_rejected"])
    assert [p.name for p in c.dir.iterdir()] == ["k.npz"] and c.notes == []
    assert c.load("absent") is None and c.notes == []


def _npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "unreadable"),
    (lambda p: p.write_bytes(b"\x00junk" * 40), "unreadable"),
    (lambda p: p.write_bytes(b""), "unreadable"),
    (lambda p: _npz(p, {k: v for k, v in scores().items() if k != "len_chosen"}), "missing len_chosen"),
    (lambda p: _npz(p, {**scores(), "extra": np.zeros(5)}), "unexpected extra"),
    (lambda p: _npz(p, {**scores(), "len_chosen": np.zeros(4)}), "different lengths"),
    (lambda p: _npz(p, {**scores(), "logp_chosen": np.zeros((5, 2))}), "1-D numeric"),
    (lambda p: _npz(p, {**scores(), "logp_chosen": np.array(list("abcde"))}), "1-D numeric"),
])
def test_damaged_entry_is_missing_noted_and_removed(tmp_path, damage, why):
    c = ScoreCache(tmp_path)
    c.save("k", scores())
    damage(c._path("k"))
    assert c.load("k") is None
    assert len(c.notes) == 1 and why in c.notes[0] and "k.npz" in c.notes[0] and "\n" not in c.notes[0]
    assert not c._path("k").exists()
    c.save("k", scores())  # the rescored entry replaces it
    assert c.load("k") is not None and len(c.notes) == 1


def test_wrong_length_for_these_pairs(tmp_path):
    c = ScoreCache(tmp_path)
    c.save("k", scores(5))
    assert c.load("k", length=7) is None
    assert "5 rows, expected 7" in c.notes[0]


def test_full_disk_leaves_no_partial_entry(tmp_path, monkeypatch):
    c = ScoreCache(tmp_path)
    c.save("k", scores())
    before = c._path("k").read_bytes()

    def full(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "savez", full)
    with pytest.raises(UserError, match=r"score cache .* ran out of space .*--cache-dir"):
        c.save("k", scores())
    assert [p.name for p in c.dir.iterdir()] == ["k.npz"]  # temp file removed
    assert c._path("k").read_bytes() == before  # the old entry untouched


def test_cache_dir_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="--cache-dir"):
        ScoreCache(tmp_path / "f").save("k", scores())
