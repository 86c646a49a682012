import json

import numpy as np
import pytest

from jsplit import cache


@pytest.fixture
def tree():
    rng = np.random.default_rng(0)
    return {"levels": {"0": {"params": {"dense1": {"kernel": rng.normal(size=(5, 3)).astype(np.float32),
                                                   "bias": np.zeros(3, np.float32)}}}}}


def test_round_trip(tmp_path, tree):
    cache.save(tmp_path, "abc", tree, {"record": {"accuracy": 0.98}})
    restored, meta = cache.load(tmp_path, "abc")

    np.testing.assert_array_equal(restored["levels"]["0"]["params"]["dense1"]["kernel"],
                                  tree["levels"]["0"]["params"]["dense1"]["kernel"])
    assert meta["record"]["accuracy"] == 0.98


def test_missing_entry_returns_none(tmp_path):
    assert cache.load(tmp_path, "absent") is None


def test_partial_entry_is_rebuilt(tmp_path, tree):
    entry = cache.save(tmp_path, "abc", tree, {})
    (entry / "meta.json").unlink()

    assert cache.load(tmp_path, "abc") is None
    assert not entry.exists()


def test_corrupted_entry_is_rebuilt(tmp_path, tree):
    entry = cache.save(tmp_path, "abc", tree, {})
    meta = json.loads((entry / "meta.json").read_text())
    meta["digest"] = "0" * 64
    (entry / "meta.json").write_text(json.dumps(meta))

    assert cache.load(tmp_path, "abc") is None
    assert not entry.exists()


def test_damaged_checkpoint_files_are_rebuilt(tmp_path, tree):
    entry = cache.save(tmp_path, "abc", tree, {})
    for path in (entry / "checkpoint").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")

    assert cache.load(tmp_path, "abc") is None
    assert not entry.exists()


def test_key_depends_on_every_field():
    base = {"seed": 0, "sparsities": [0.5, 0.9]}

    assert cache.cache_key(base) == cache.cache_key(dict(base))
    assert cache.cache_key(base) != cache.cache_key({**base, "seed": 1})
    assert cache.cache_key(base) != cache.cache_key({**base, "sparsities": [0.5]})
