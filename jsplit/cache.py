"""Orbax cache of trained and pruned parameters.

An entry lives in ``<cache_dir>/models/<key>/`` where the key is a digest of
everything that determines the parameters (data digest, model, training and
pruning settings, seed). It contains an Orbax checkpoint and ``meta.json``,
which is written last and records a digest of every restored array. An entry
without ``meta.json`` (an interrupted save) or whose arrays do not match the
recorded digest (a corrupted file) is deleted and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when the meaning of cached parameters changes


def cache_key(material: dict) -> str:
    """Digest (24 hex characters) of a JSON-serialisable description of what determines an entry."""
    text = json.dumps({"format": FORMAT_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def tree_digest(tree) -> str:
    """sha256 over every array of a pytree: its path, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def entry_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir).expanduser() / "models" / key


def save(cache_dir: str | os.PathLike, key: str, tree, meta: dict) -> Path:
    """Write ``tree`` (a pytree of arrays) and ``meta`` as the entry ``key``; replaces an existing entry."""
    entry = entry_path(cache_dir, key)
    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)

    tree = jax.tree.map(np.asarray, tree)
    ocp.PyTreeCheckpointer().save((entry / "checkpoint").absolute(), tree)

    record = {**meta, "key": key, "digest": tree_digest(tree)}
    partial = entry / "meta.json.partial"
    partial.write_text(json.dumps(record, indent=2, default=str))
    os.replace(partial, entry / "meta.json")
    return entry


def load(cache_dir: str | os.PathLike, key: str):
    """Return ``(tree, meta)`` for a complete, intact entry, else None (deleting a damaged one)."""
    entry = entry_path(cache_dir, key)
    if not entry.exists():
        return None

    meta_file = entry / "meta.json"
    if not meta_file.is_file():
        log.warning("cache entry %s is incomplete (no meta.json); rebuilding it", entry)
        shutil.rmtree(entry, ignore_errors=True)
        return None

    try:
        meta = json.loads(meta_file.read_text())
        tree = ocp.PyTreeCheckpointer().restore((entry / "checkpoint").absolute())
        tree = jax.tree.map(np.asarray, tree)
    except Exception as error:  # noqa: BLE001 - any unreadable entry is rebuilt, with the reason logged
        log.warning("cache entry %s cannot be read (%s: %s); rebuilding it", entry, type(error).__name__, error)
        shutil.rmtree(entry, ignore_errors=True)
        return None

    if tree_digest(tree) != meta.get("digest"):
        log.warning("cache entry %s does not match its recorded digest; rebuilding it", entry)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return tree, meta
