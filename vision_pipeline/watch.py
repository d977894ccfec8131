"""Watch a dataset folder for new, changed or removed image/label files — cheaply, with a cursor.

Plain Python (no Dagster): the retraining sensor in ``defs/automation.py`` calls :func:`scan`, and so
could a cron job or a test.

How a tick stays cheap
----------------------
The cursor remembers, per *directory* (never per file), four numbers: the directory's own mtime, how
many watched files it holds, a 16-hex digest of their ``(name, size, mtime)`` and the newest file
mtime. A tick ``stat``s every known directory once; only a directory whose mtime moved is listed
again (``os.scandir`` plus one ``stat`` per file in *that* directory). Creating, deleting or renaming
a file changes its directory's mtime, so those are seen at the cost of rescanning the directories
they happened in; a tick where nothing happened costs one ``stat`` per directory (a 100,000-file
dataset in the usual ``images/{train,val}`` + ``labels/{train,val}`` layout: 7 ``stat`` calls).

Known limit, stated plainly: rewriting an existing file *in place* (``open(path, "w")``) changes the
file's mtime but not its directory's, so the cheap tick does not see it. Writers that replace files
atomically (write a temporary file, then rename — what ``rsync``, ``aws s3 sync`` and most tools do)
are seen at once; for in-place rewrites every ``full_scan_s`` seconds one tick rescans every
directory (the digest includes each file's size and mtime), so such an edit is picked up within that
period (default one hour). The retraining decision itself never relies on mtimes: it is made on the
dataset's content hash (``vision.dataset.content_hash``), which reads every byte.

Half-written files
------------------
A watched file modified less than ``settle_s`` seconds ago (a copy in progress, a size still
growing) makes the scan report it as *settling*; the caller then skips the tick and keeps the old
cursor, so the same directories are looked at again next tick until the writes have stopped.
A writer that stalls for longer than ``settle_s`` in the middle of a file is indistinguishable from
a finished one; the content hash and dataset validation of the run that follows still catch a
truncated image or label.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vision_pipeline.settings import temporary_env
from vision_pipeline.vision.dataset import IMAGE_SUFFIXES

CURSOR_VERSION = 1
# What counts as dataset content: images (every format the dataset module accepts), label files and
# the dataset YAML. Anything else (README, ultralytics' *.cache, editor droppings) changes nothing.
WATCHED_SUFFIXES = frozenset(IMAGE_SUFFIXES | {".txt", ".yaml", ".yml"})
# Names of files that are being written by common tools; never content, never "settled".
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".download", "~")

DEFAULT_SETTLE_S = 10.0
DEFAULT_FULL_SCAN_S = 3600.0
DEFAULT_MIN_RETRAIN_INTERVAL_S = 3600.0


class WatchError(RuntimeError):
    """The watched folder cannot be scanned: what is wrong, where, and how to fix it."""


class WatchSettingsError(ValueError):
    """A watch setting from the environment is not usable (names the variable and the value)."""


# --------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WatchSettings:
    """The retraining sensor's settings. ``folder=None``: nothing is watched (the sensor says how to set it)."""

    folder: Path | None = None
    min_retrain_interval_s: float = DEFAULT_MIN_RETRAIN_INTERVAL_S
    settle_s: float = DEFAULT_SETTLE_S
    full_scan_s: float = DEFAULT_FULL_SCAN_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WatchSettings":
        """Read ``VISION_PIPELINE_WATCH_DIR``, ``VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S``,
        ``VISION_PIPELINE_WATCH_SETTLE_S`` and ``VISION_PIPELINE_WATCH_FULL_SCAN_S``.

        Called at every sensor tick (never at import), so a fixed variable takes effect without a
        reload. A bad value raises :class:`WatchSettingsError` naming the variable.
        """
        env = os.environ if env is None else env
        raw_dir = (env.get("VISION_PIPELINE_WATCH_DIR") or "").strip()
        return cls(
            folder=Path(raw_dir).expanduser().absolute() if raw_dir else None,
            min_retrain_interval_s=_seconds(env, "VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S", DEFAULT_MIN_RETRAIN_INTERVAL_S),
            settle_s=_seconds(env, "VISION_PIPELINE_WATCH_SETTLE_S", DEFAULT_SETTLE_S),
            full_scan_s=_seconds(env, "VISION_PIPELINE_WATCH_FULL_SCAN_S", DEFAULT_FULL_SCAN_S),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise WatchSettingsError(f"{name}={raw!r} is not a number of seconds (e.g. {name}={int(default)})") from None
    if not (value >= 0 and value != float("inf")):
        raise WatchSettingsError(f"{name}={raw!r} must be a finite number of seconds >= 0")
    return value


# ----------------------------------------------------------------------------------------- cursor


@dataclass(frozen=True)
class DirState:
    """One directory as last scanned. Serialised as a 4-element list to keep the cursor small."""

    mtime_ns: int
    files: int
    digest: str
    newest_ns: int

    def to_json(self) -> list[Any]:
        return [self.mtime_ns, self.files, self.digest, self.newest_ns]

    @classmethod
    def from_json(cls, raw: Any) -> "DirState":
        mtime_ns, files, digest, newest_ns = raw
        return cls(int(mtime_ns), int(files), str(digest), int(newest_ns))


@dataclass
class WatchCursor:
    """Per-directory state of one watched folder (keys: paths relative to it, ``""`` for the folder)."""

    root: str
    dirs: dict[str, DirState] = field(default_factory=dict)
    full_scan_at: float = 0.0

    @property
    def files(self) -> int:
        return sum(d.files for d in self.dirs.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "root": self.root,
            "full_scan_at": round(self.full_scan_at, 3),
            "dirs": {rel: state.to_json() for rel, state in sorted(self.dirs.items())},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "WatchCursor | None":
        """The cursor, or None when ``raw`` is empty, of another version or unreadable (-> a first scan)."""
        if not raw or raw.get("v") != CURSOR_VERSION:
            return None
        try:
            return cls(
                root=str(raw["root"]),
                dirs={str(rel): DirState.from_json(v) for rel, v in dict(raw["dirs"]).items()},
                full_scan_at=float(raw.get("full_scan_at") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> "WatchCursor | None":
        if not text:
            return None
        try:
            return cls.from_dict(json.loads(text))
        except ValueError:
            return None


# ------------------------------------------------------------------------------------------- scan


@dataclass
class ScanResult:
    """What one tick found. ``cursor`` is the state to store when the caller accepts the tick."""

    cursor: WatchCursor
    first_scan: bool
    full_scan: bool
    added_dirs: list[str] = field(default_factory=list)
    removed_dirs: list[str] = field(default_factory=list)
    changed_dirs: list[str] = field(default_factory=list)  # listing or file sizes/mtimes differ
    settling: list[tuple[str, float]] = field(default_factory=list)  # (relative file path, seconds since last write)
    dirs_checked: int = 0
    dirs_rescanned: int = 0
    files_listed: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Content may differ from the previous cursor (always True on a first scan)."""
        return self.first_scan or bool(self.added_dirs or self.removed_dirs or self.changed_dirs)

    def describe(self) -> str:
        if self.first_scan:
            what = f"first scan: {self.cursor.files} watched files in {len(self.cursor.dirs)} folders"
        elif self.changed:
            parts = []
            for label, dirs in (("changed", self.changed_dirs), ("new", self.added_dirs), ("removed", self.removed_dirs)):
                if dirs:
                    shown = ", ".join((d or ".") for d in dirs[:3]) + (f" (+{len(dirs) - 3})" if len(dirs) > 3 else "")
                    parts.append(f"{label}: {shown}")
            what = "; ".join(parts)
        else:
            what = f"no change in {self.cursor.files} watched files"
        return (f"{what} ({self.dirs_checked} folders checked, {self.dirs_rescanned} listed"
                f"{', full scan' if self.full_scan and not self.first_scan else ''}, {self.seconds * 1000:.0f} ms)")

    def settling_text(self, settle_s: float) -> str:
        shown = ", ".join(f"{p} ({age:.0f} s ago)" for p, age in self.settling[:3])
        more = f" and {len(self.settling) - 3} more" if len(self.settling) > 3 else ""
        return (f"{len(self.settling)} file(s) still being written (modified within the last {settle_s:g} s): "
                f"{shown}{more}; waiting for them to settle before looking at the dataset")


def _watched(name: str) -> bool:
    if name.startswith(".") or name.endswith(_TEMP_SUFFIXES):
        return False
    return os.path.splitext(name)[1].lower() in WATCHED_SUFFIXES


def _explain(exc: OSError, path: str, what: str) -> WatchError:
    if isinstance(exc, PermissionError):
        return WatchError(
            f"permission denied {what} {path}: the process running the sensor (uid {os.geteuid()}) needs "
            "read and execute permission on every folder and read permission on every file of the dataset"
        )
    if isinstance(exc, FileNotFoundError):
        return WatchError(f"{path} disappeared while {what.removesuffix(' folder')} it (removed, renamed or unmounted?)")
    return WatchError(f"cannot read {path} ({what}): {exc.strerror or exc}")


def _list_dir(path: str, now_ns: int, settle_ns: int, rel: str) -> tuple[DirState, list[str], list[tuple[str, float]]]:
    """Scan one directory: its state, its subdirectories (relative names) and its settling files."""
    try:
        dir_mtime = os.stat(path).st_mtime_ns
        entries = list(os.scandir(path))
    except OSError as exc:
        raise _explain(exc, path, "listing folder") from exc
    files: list[tuple[str, int, int]] = []
    subdirs: list[str] = []
    settling: list[tuple[str, float]] = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith("."):
                    subdirs.append(entry.name)
                continue
            if not _watched(entry.name):
                continue
            st = entry.stat()  # follows a symlinked file: its target is the content
        except FileNotFoundError:
            continue  # removed between listing and stat: the directory's mtime moved, next tick sees it
        except OSError as exc:
            raise _explain(exc, entry.path, "reading file") from exc
        if not stat_mod.S_ISREG(st.st_mode):
            continue
        files.append((entry.name, st.st_size, st.st_mtime_ns))
        age_ns = now_ns - st.st_mtime_ns
        if settle_ns and age_ns < settle_ns:
            settling.append(((f"{rel}/{entry.name}" if rel else entry.name), max(age_ns, 0) / 1e9))
    files.sort()
    digest = hashlib.blake2b(digest_size=8)
    for name, size, mtime_ns in files:
        digest.update(f"{name}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    newest = max((m for _, _, m in files), default=0)
    return DirState(dir_mtime, len(files), digest.hexdigest(), newest), sorted(subdirs), settling


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def scan(
    folder: Path | str,
    cursor: WatchCursor | None,
    *,
    settle_s: float = DEFAULT_SETTLE_S,
    full_scan_s: float = DEFAULT_FULL_SCAN_S,
    now: float | None = None,
) -> ScanResult:
    """Compare ``folder`` with ``cursor`` (None or another folder's cursor: a first, full scan).

    Raises :class:`WatchError` when the folder is missing, is not a folder, or cannot be read. The
    returned cursor is complete and may be stored as is; on ``settling`` files the caller should
    keep the old one (see the module doc).
    """
    started = time.perf_counter()
    now = time.time() if now is None else now
    now_ns = int(now * 1e9)
    settle_ns = int(settle_s * 1e9)
    root = str(Path(folder).expanduser().absolute())
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise WatchError(
            f"watched folder {root} does not exist (removed, renamed or not mounted?): restore it or point "
            "VISION_PIPELINE_WATCH_DIR at the dataset folder"
        ) from None
    except OSError as exc:
        raise _explain(exc, root, "opening folder") from exc
    if not stat_mod.S_ISDIR(st.st_mode):
        raise WatchError(f"watched path {root} is not a folder: VISION_PIPELINE_WATCH_DIR must name the dataset folder")

    first = cursor is None or cursor.root != root
    full = first or (full_scan_s > 0 and now - cursor.full_scan_at >= full_scan_s)
    old = {} if first else dict(cursor.dirs)
    result = ScanResult(cursor=WatchCursor(root=root, full_scan_at=now if full else cursor.full_scan_at),
                        first_scan=first, full_scan=full)
    new: dict[str, DirState] = {}

    def rescan_tree(rel: str) -> None:
        """List ``rel``; recurse into subdirectories that are new (or into all of them on a full scan)."""
        path = os.path.join(root, rel) if rel else root
        state, subdirs, settling = _list_dir(path, now_ns, settle_ns, rel)
        result.dirs_rescanned += 1
        result.files_listed += state.files
        result.settling.extend(settling)
        new[rel] = state
        previous = old.get(rel)
        if not first:
            if previous is None:
                result.added_dirs.append(rel)
            elif (previous.files, previous.digest) != (state.files, state.digest):
                result.changed_dirs.append(rel)
        for name in subdirs:
            child = _join(rel, name)
            if full or child not in old:
                rescan_tree(child)
            # a known child is checked by the main loop below (it is in ``old``)

    if full:
        rescan_tree("")
    else:
        # Parents first, so a directory re-listed because it is new is not stat'ed twice.
        for rel in sorted(old, key=lambda r: (r.count("/") + (r != ""), r)):
            if rel in new or rel not in old:
                continue  # listed already (under a re-listed parent), or removed with its parent
            path = os.path.join(root, rel) if rel else root
            result.dirs_checked += 1
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                result.removed_dirs.append(rel)
                old_children = [r for r in old if r.startswith(rel + "/")]
                for child in old_children:
                    old.pop(child, None)
                    result.removed_dirs.append(child)
                old.pop(rel, None)
                continue
            except OSError as exc:
                raise _explain(exc, path, "opening folder") from exc
            if not stat_mod.S_ISDIR(st.st_mode):
                result.removed_dirs.append(rel)
                old.pop(rel, None)
                continue
            if st.st_mtime_ns != old[rel].mtime_ns:
                rescan_tree(rel)
                # children that vanished from this listing are found by their own failing stat
            else:
                new[rel] = old[rel]
    if full and not first:
        result.removed_dirs.extend(sorted(set(old) - set(new)))
        result.dirs_checked = len(new)
    elif first:
        result.dirs_checked = len(new)
    result.cursor.dirs = new
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------------ bench


def make_file_tree(root: Path, n_files: int, *, per_dir: int = 0) -> Path:
    """A YOLO-shaped tree of ``n_files`` empty files: half images, half labels, 80/20 train/val.

    ``per_dir`` > 0 spreads each split over sub-folders of that many files (nested layout); 0 keeps
    the usual flat ``images/train`` layout. Writes ``data.yaml``. Used by the bench and the tests.
    """
    root = Path(root)
    pairs = max(n_files // 2, 1)
    n_train = int(pairs * 0.8)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    for split, start, count in (("train", 0, n_train), ("val", n_train, pairs - n_train)):
        for i in range(start, start + count):
            sub = f"/{(i - start) // per_dir:04d}" if per_dir else ""
            for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
                folder = root / kind / f"{split}{sub}"
                if (i - start) % (per_dir or count or 1) == 0:
                    folder.mkdir(parents=True, exist_ok=True)
                with open(folder / f"{i:07d}{suffix}", "wb"):
                    pass
    return root


def bench_sensor_tick(n_files: int, tmpdir: Path | str, *, repeats: int = 5, through_sensor: bool = True) -> dict[str, Any]:
    """Time the retraining sensor on a generated folder of ``n_files`` files (for ``make bench``).

    Reports: building the folder, the first (full) scan, a tick with nothing new (median of
    ``repeats``; the number the issue targets: well under a second at 100,000 files), a tick after
    one new file (rescans only the directory it landed in), the cursor's size, and — with
    ``through_sensor`` — the same no-change tick through the real Dagster sensor (cursor parsing,
    settings, SkipReason) on an ephemeral instance. Old mtimes are set on the generated files so
    that none counts as still being written.
    """
    tmpdir = Path(tmpdir)
    folder = tmpdir / f"watch-bench-{n_files}"
    t0 = time.perf_counter()
    make_file_tree(folder, n_files)
    past = time.time() - 3600
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (past, past))
    build_s = time.perf_counter() - t0

    first = scan(folder, None, settle_s=DEFAULT_SETTLE_S, full_scan_s=0)
    cursor = first.cursor
    idle = []
    for _ in range(max(repeats, 1)):
        r = scan(folder, cursor, settle_s=DEFAULT_SETTLE_S, full_scan_s=0)
        assert not r.changed, r.describe()
        idle.append(r.seconds)
    new_file = folder / "images" / "val" / "zz-new.jpg"
    new_file.write_bytes(b"")
    os.utime(new_file, (past, past))
    changed = scan(folder, cursor, settle_s=DEFAULT_SETTLE_S, full_scan_s=0)
    assert changed.changed, "the new file was not detected"
    idle.sort()
    out: dict[str, Any] = {
        "n_files": n_files,
        "build_folder_s": round(build_s, 3),
        "first_scan_s": round(first.seconds, 4),
        "idle_tick_s_median": round(idle[len(idle) // 2], 6),
        "idle_tick_s_max": round(idle[-1], 6),
        "one_new_file_tick_s": round(changed.seconds, 4),
        "one_new_file_dirs_rescanned": changed.dirs_rescanned,
        "directories": len(cursor.dirs),
        "cursor_bytes": len(cursor.to_json()),
    }
    if through_sensor:
        out.update(_bench_through_sensor(folder, changed.cursor, repeats))
    return out


def _bench_through_sensor(folder: Path, cursor: WatchCursor, repeats: int) -> dict[str, Any]:
    import dagster as dg  # only here: this module stays Dagster-free

    from vision_pipeline.defs.automation import SensorCursor, retrain_sensor
    from vision_pipeline.defs.resources import JobRecordsResource

    with temporary_env({"VISION_PIPELINE_WATCH_DIR": str(folder), "VISION_PIPELINE_WATCH_FULL_SCAN_S": "0"}):
        instance = dg.DagsterInstance.ephemeral()
        raw_cursor = SensorCursor(watch=cursor.to_dict()).to_json()
        times = []
        for _ in range(max(repeats, 1)):
            # The idle tick never opens the job-record database (the resource connects lazily).
            with dg.build_sensor_context(instance=instance, cursor=raw_cursor,
                                         resources={"job_records": JobRecordsResource()}) as context:
                t0 = time.perf_counter()
                result = retrain_sensor(context)
                times.append(time.perf_counter() - t0)
            skip = result.skip_reason if hasattr(result, "skip_reason") else result
            text = getattr(skip, "skip_message", None) or str(skip)
            assert "no change" in text, text
        times.sort()
        return {"sensor_idle_tick_s_median": round(times[len(times) // 2], 6), "sensor_cursor_bytes": len(raw_cursor)}
