"""The data directory's layout: which shard directories must exist, and whose they are.

    path/ENGINE              {"format": 2, "engine_id": "<hex>", "shards": N, "slots": 1024}
    path/shard-NNN/SHARD     {"format": 1, "engine_id": "<hex>", "index": i, "shards": N}
    path/shard-NNN/...       shard i's wal log (MANIFEST, segments, hints), its checkpoint

Why: the engine's state is the union of its shards, and a shard that is missing, swapped
for another engine's, or opened under another shard count would silently shrink it (a
flow routed to a shard that never held it reads as absent, and can be created twice).
So each shard directory names its engine, its index and the shard count, and `ENGINE`
names the count; `check` holds the directory against both and refuses every mismatch with
`DataDirDamaged` (or `InvalidArgument` for a wrong `shards=`), changing nothing.

Creating is crash-safe: every shard directory and its SHARD file are written first and
`ENGINE` last, as the commit point; no log is opened before it. So a directory with shard
directories but no ENGINE is either a creation cut short (no shard holds any log data: it
is finished now) or a deleted ENGINE (some shard holds data: refused).

A directory made before shard identities existed (ENGINE format 1) is adopted: its shard
directories must all be there; their logs are opened with `adopt=True` (they have no wal
MANIFEST yet), and only once every shard opened are the SHARD files and the new ENGINE
written (`Layout.finish`).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import wal

from ._errors import DataDirDamaged, InvalidArgument

ENGINE_FILE = "ENGINE"
SHARD_FILE = "SHARD"
ENGINE_FORMAT = 2
SHARD_FORMAT = 1
# Shards of a new engine unless told. Every shard runs on the one Trio thread, so more
# shards add no CPU; each adds a group commit of its own, and a commit cycle costs the
# loop about as much as a fdatasync takes (the hand-off to the commit thread and the
# wake-up after it). One shard gathers every command sent one at a time into one commit:
# on the 2-core VM, 200 tasks sending single commands ran 9.0k lifecycles/s on one
# shard, 8.1k on two and 7.1k on four, and the p99 of an open loop at 4,500/s was 6, 9
# and 18 ms; batch calls ran alike. More shards pay when fdatasync, not the loop, is the
# limit (a slow disk under many writers): pass `shards=` at creation.
DEFAULT_SHARDS = 1


def shard_dir(root: str, index: int) -> str:
    return os.path.join(root, f"shard-{index:03d}")


def _shard_index(name: str) -> int | None:
    stem = name[len("shard-") :]
    if name.startswith("shard-") and stem.isdigit():
        return int(stem)
    return None


@dataclass(frozen=True, slots=True)
class Layout:
    root: str
    engine_id: str
    shards: int
    created: bool  # this open created the engine (or finished a creation cut short)
    adopt: bool  # ENGINE format 1: open the logs with adopt=True, then `finish`

    def finish(self, fs: wal.FileSystem) -> None:
        """After every shard opened: write what an adopted directory still lacks."""
        if not self.adopt:
            return
        for i in range(self.shards):
            _write_json(fs, shard_dir(self.root, i), SHARD_FILE, self._identity(i))
        _write_json(fs, self.root, ENGINE_FILE, self._engine())

    def _engine(self) -> dict[str, object]:
        return {
            "format": ENGINE_FORMAT,
            "engine_id": self.engine_id,
            "shards": self.shards,
            "slots": 1024,
        }

    def _identity(self, index: int) -> dict[str, object]:
        return {
            "format": SHARD_FORMAT,
            "engine_id": self.engine_id,
            "index": index,
            "shards": self.shards,
        }


def check(fs: wal.FileSystem, root: str, shards: int | None) -> Layout:
    """Hold `root` against its ENGINE and SHARD files (creating a new engine when there is
    none, with `shards` or DEFAULT_SHARDS); see the module doc. `shards=None` takes the
    count the directory was created with. Blocking: run it in a thread."""
    engine_path = os.path.join(root, ENGINE_FILE)
    present = (
        {i for n in fs.listdir(root) if (i := _shard_index(n)) is not None}
        if fs.exists(root)
        else set()
    )
    if not fs.exists(engine_path):
        holding = sorted(i for i in present if _holds_data(fs, shard_dir(root, i)))
        if holding:
            raise DataDirDamaged(
                f"{engine_path} is missing, but {len(present)} shard directories are there "
                f"and {len(holding)} hold data (first: {shard_dir(root, holding[0])}); "
                "restore ENGINE (it records the shard count) rather than open them "
                "under a guess"
            )
        return _create(fs, root, DEFAULT_SHARDS if shards is None else shards)
    meta = _read_json(fs, engine_path)
    fmt = meta.get("format")
    count = meta.get("shards")
    if type(count) is not int or count < 1 or fmt not in (1, ENGINE_FORMAT):
        raise DataDirDamaged(f"{engine_path} is not a flowactors engine file: {meta!r}")
    if shards is not None and count != shards:
        raise InvalidArgument(
            f"{root} was created with {count} shards; open it with shards={count}"
        )
    missing = [i for i in range(count) if i not in present]
    if missing:
        raise DataDirDamaged(
            f"{shard_dir(root, missing[0])} is missing ({len(missing)} of {count} shard "
            "directories are): its flows would be gone; restore it from a backup"
        )
    foreign = sorted(present - set(range(count)))
    if foreign:
        raise DataDirDamaged(
            f"{shard_dir(root, foreign[0])} does not belong to this {count}-shard engine"
        )
    if fmt == 1:
        return Layout(root, uuid.uuid4().hex, count, created=False, adopt=True)
    engine_id = meta.get("engine_id")
    if not isinstance(engine_id, str):
        raise DataDirDamaged(f"{engine_path} has no engine_id: {meta!r}")
    layout = Layout(root, engine_id, count, created=False, adopt=False)
    for i in range(count):
        path = os.path.join(shard_dir(root, i), SHARD_FILE)
        if not fs.exists(path):
            raise DataDirDamaged(f"{path} is missing: cannot tell whose shard this is")
        identity = _read_json(fs, path)
        if identity != layout._identity(i):
            raise DataDirDamaged(
                f"{path} says {identity!r}, but this is shard {i} of {count} of engine "
                f"{engine_id}: a shard directory of another engine, or moved"
            )
    return layout


def _create(fs: wal.FileSystem, root: str, shards: int) -> Layout:
    layout = Layout(root, uuid.uuid4().hex, shards, created=True, adopt=False)
    wal.makedirs_durably(fs, root)
    for i in range(shards):
        wal.makedirs_durably(fs, shard_dir(root, i))
        _write_json(fs, shard_dir(root, i), SHARD_FILE, layout._identity(i))
    _write_json(fs, root, ENGINE_FILE, layout._engine())
    return layout


def _holds_data(fs: wal.FileSystem, directory: str) -> bool:
    for name in fs.listdir(directory):
        if name == "MANIFEST" or name.endswith(".hint"):
            return True
        if name.endswith(".log"):
            handle = fs.open(os.path.join(directory, name), create=False)
            try:
                if handle.size():
                    return True
            finally:
                handle.close()
    return False


def _read_json(fs: wal.FileSystem, path: str) -> dict[str, object]:
    try:
        meta = json.loads(fs.read_file(path))
    except (OSError, ValueError) as exc:
        raise DataDirDamaged(f"{path} cannot be read: {exc}") from exc
    if not isinstance(meta, dict):
        raise DataDirDamaged(f"{path} is not a flowactors metadata file")
    return meta


def _write_json(fs: wal.FileSystem, directory: str, name: str, meta: dict[str, object]) -> None:
    """Durably: a temp file, fsync, rename, directory fsync."""
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    handle = fs.open(tmp, create=True)
    try:
        handle.append(json.dumps(meta, sort_keys=True).encode())
        handle.sync()
    finally:
        handle.close()
    fs.rename(tmp, path)
    fs.sync_dir(directory)
