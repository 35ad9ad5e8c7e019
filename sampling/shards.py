"""Samples streamed to disk in shards, `<folder>/<start>-<stop>.npz` (samples start..stop-1 and
their per-sample info), each written whole or not at all: a run killed at any moment and started
again draws only the samples no shard holds. Which setting the shards belong to is kept in
`<folder>/setting.json`; a different setting is an error, never a mix."""

from __future__ import annotations

import json
import os
import re

import numpy as np

SHARD = re.compile(r"^(\d+)-(\d+)\.npz$")


def check_setting(folder: str, setting: dict) -> None:
    """Record `setting` for a new folder; an existing folder must hold the same one."""
    path = os.path.join(folder, "setting.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        # a key absent on one side counts as None (settings that gained an optional field)
        changed = sorted(k for k in set(saved) | set(setting) if saved.get(k) != setting.get(k))
        if changed:
            there = {k: saved.get(k) for k in changed}
            now = {k: setting.get(k) for k in changed}
            raise ValueError(
                f"{folder!r} holds shards of another setting ({there} there, {now} now); "
                f"choose another --out or remove it"
            )
        return
    os.makedirs(folder, exist_ok=True)
    write_atomic(path, lambda f: f.write(json.dumps(setting, indent=2).encode()))


def written(folder: str) -> list[tuple[int, int]]:
    """The (start, stop) ranges of the shards in folder, sorted."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted((int(m[1]), int(m[2])) for m in map(SHARD.match, names) if m)


def chunk_ranges(start: int, stop: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) in consecutive chunks of at most batch_size samples."""
    return [(a, min(a + batch_size, stop)) for a in range(start, stop, batch_size)]


def missing(folder: str, num: int, batch_size: int) -> list[tuple[int, int]]:
    """The ranges of samples 0..num-1 that no shard holds, in chunks of at most batch_size."""
    have = np.zeros(num + 1, bool)
    have[num] = True  # a sentinel that closes the last gap
    for start, stop in written(folder):
        have[start : min(stop, num)] = True
    todo, start = [], None
    for i in range(num + 1):
        if not have[i] and start is None:
            start = i
        elif have[i] and start is not None:
            todo += chunk_ranges(start, i, batch_size)
            start = None
    return todo


def write_atomic(path: str, write) -> None:
    """write(file) into path.tmp, then rename it to path (atomic on POSIX)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write(folder: str, start: int, stop: int, x, info: dict) -> None:
    """Samples start..stop-1 and their per-sample info as one shard."""
    arrays = {"x": np.asarray(x), **{f"info_{k}": np.asarray(v) for k, v in info.items()}}
    write_atomic(
        os.path.join(folder, f"{start:09d}-{stop:09d}.npz"), lambda f: np.savez(f, **arrays)
    )


def read(folder: str, num: int):
    """(x, per-sample info) of samples 0..num-1 from the shards, in index order."""
    x, info, covered = [], {}, 0
    for start, stop in written(folder):
        if start != covered:
            raise ValueError(f"shards in {folder!r} do not cover samples {covered}..{start - 1}")
        with np.load(os.path.join(folder, f"{start:09d}-{stop:09d}.npz")) as shard:
            x.append(shard["x"])
            for key in shard.files:
                if key.startswith("info_"):
                    info.setdefault(key[5:], []).append(shard[key])
        covered = stop
        if covered >= num:
            break
    if covered < num:
        raise ValueError(f"shards in {folder!r} hold samples 0..{covered - 1}, not all {num}")
    return np.concatenate(x)[:num], {k: np.concatenate(v)[:num] for k, v in info.items()}
