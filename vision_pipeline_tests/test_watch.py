"""The folder watcher (``vision_pipeline.watch``): cursor, change detection, settling files, bad folders.

Plain Python, real files. Permission-denied cases run the scan in a forked child that has dropped to
the ``nobody`` user: the tests run as root, and root is not denied by ``chmod 000``.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vision_pipeline.watch import (
    WatchCursor,
    WatchError,
    WatchSettings,
    WatchSettingsError,
    bench_sensor_tick,
    make_file_tree,
    scan,
)

PAST = time.time() - 3600


def age(root: Path, seconds_ago: float = 3600) -> None:
    """Set every file's mtime into the past (so nothing counts as still being written)."""
    when = time.time() - seconds_ago
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(dirpath, name), (when, when))


def write_old(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (PAST, PAST))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = make_file_tree(tmp_path / "ds", 200, per_dir=20)
    age(root)
    return root


def first(root: Path) -> WatchCursor:
    result = scan(root, None, settle_s=5, full_scan_s=0)
    assert result.first_scan and result.changed
    return result.cursor


# --------------------------------------------------------------------------------- change detection


def test_first_scan_then_idle_tick_lists_nothing(tree: Path) -> None:
    cursor = first(tree)
    assert cursor.files == 201  # 100 images + 100 labels + data.yaml
    restored = WatchCursor.from_json(cursor.to_json())
    assert restored.dirs == cursor.dirs and restored.root == cursor.root
    result = scan(tree, restored, settle_s=5, full_scan_s=0)
    assert not result.changed and not result.settling
    assert result.dirs_rescanned == 0 and result.dirs_checked == len(cursor.dirs)
    assert "no change in 201 watched files" in result.describe()


def test_new_file_rescans_only_its_folder(tree: Path) -> None:
    cursor = first(tree)
    write_old(tree / "images" / "train" / "0001" / "new.jpg")
    result = scan(tree, cursor, settle_s=5, full_scan_s=0)
    assert result.changed_dirs == ["images/train/0001"]
    assert result.dirs_rescanned == 1 and not result.added_dirs and not result.removed_dirs
    # The new cursor knows it: the next tick is idle again.
    assert not scan(tree, result.cursor, settle_s=5, full_scan_s=0).changed


def test_removed_and_renamed_files_are_changes(tree: Path) -> None:
    cursor = first(tree)
    victim = next((tree / "labels" / "val" / "0000").iterdir())
    victim.unlink()
    result = scan(tree, cursor, settle_s=5, full_scan_s=0)
    assert result.changed_dirs == ["labels/val/0000"]
    cursor = result.cursor
    img = next((tree / "images" / "val" / "0000").iterdir())
    img.rename(img.with_name("renamed" + img.suffix))  # same size and mtime, another name
    assert scan(tree, cursor, settle_s=5, full_scan_s=0).changed_dirs == ["images/val/0000"]


def test_new_and_removed_folders(tree: Path) -> None:
    cursor = first(tree)
    write_old(tree / "images" / "extra" / "deep" / "a.png")
    result = scan(tree, cursor, settle_s=5, full_scan_s=0)
    assert result.added_dirs == ["images/extra", "images/extra/deep"]
    cursor = result.cursor
    shutil.rmtree(tree / "labels" / "train")
    result = scan(tree, cursor, settle_s=5, full_scan_s=0)
    assert "labels/train" in result.removed_dirs and "labels/train/0000" in result.removed_dirs
    assert not any(d.startswith("labels/train") for d in result.cursor.dirs)


def test_files_that_are_not_dataset_content_are_ignored(tree: Path) -> None:
    cursor = first(tree)
    for name in ("README.md", ".hidden.jpg", "train.cache", "upload.jpg.part", "x.tmp"):
        write_old(tree / "labels" / name)
    result = scan(tree, cursor, settle_s=5, full_scan_s=0)
    assert result.dirs_rescanned == 1 and not result.changed  # listed (its mtime moved), nothing relevant


def test_in_place_rewrite_is_seen_by_the_periodic_full_scan_only(tree: Path) -> None:
    """The documented limit: an in-place rewrite does not move the folder's mtime."""
    cursor = first(tree)
    label = next((tree / "labels" / "train" / "0002").iterdir())
    label.write_text("0 0.5 0.5 0.1 0.1\n")
    os.utime(label, (PAST + 60, PAST + 60))
    cheap = scan(tree, cursor, settle_s=5, full_scan_s=3600, now=cursor.full_scan_at + 10)
    assert not cheap.changed and cheap.dirs_rescanned == 0
    full = scan(tree, cursor, settle_s=5, full_scan_s=3600, now=cursor.full_scan_at + 3601)
    assert full.full_scan and full.changed_dirs == ["labels/train/0002"]


def test_cursor_of_another_folder_or_version_means_first_scan(tree: Path, tmp_path: Path) -> None:
    cursor = first(tree)
    other = make_file_tree(tmp_path / "other", 10)
    age(other)
    assert scan(other, cursor, settle_s=5).first_scan
    assert WatchCursor.from_json('{"v": 99, "root": "/x", "dirs": {}}') is None
    assert WatchCursor.from_json("not json") is None


# ------------------------------------------------------------------------------------ settling files


def test_recently_written_file_is_settling(tree: Path) -> None:
    cursor = first(tree)
    growing = tree / "images" / "val" / "0000" / "incoming.jpg"
    growing.write_bytes(b"half")
    result = scan(tree, cursor, settle_s=30, full_scan_s=0)
    assert [p for p, _ in result.settling] == ["images/val/0000/incoming.jpg"]
    assert "still being written" in result.settling_text(30)
    # Once the writes stopped long enough, it is an ordinary change.
    os.utime(growing, (time.time() - 31, time.time() - 31))
    result = scan(tree, cursor, settle_s=30, full_scan_s=0)
    assert not result.settling and result.changed_dirs == ["images/val/0000"]


# ------------------------------------------------------------------------------------- bad folders


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path) -> None:
    with pytest.raises(WatchError, match="does not exist"):
        scan(tmp_path / "nope", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(WatchError, match="is not a folder"):
        scan(tmp_path / "file", None)


def test_folder_removed_after_first_scan(tree: Path) -> None:
    cursor = first(tree)
    shutil.rmtree(tree)
    with pytest.raises(WatchError, match="does not exist"):
        scan(tree, cursor)


def run_as_nobody(fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Run ``fn`` in a forked child that dropped to uid/gid 65534; returns its result or raises its exception.

    Root bypasses file permissions, so a real "permission denied" needs another user. The child only
    runs ``fn`` and writes the pickled outcome to a pipe.
    """
    if os.geteuid() != 0:
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                outcome = ("ok", fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the parent
                outcome = ("error", exc)
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:  # noqa: BLE001
                data = pickle.dumps(("error", RuntimeError(f"unpicklable outcome: {exc!r}")))
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(data)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                raise TimeoutError("the unprivileged child did not finish")
            ready, _, _ = select.select([read_fd], [], [], left)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break  # EOF: the child is done
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        pytest.skip("could not drop privileges to uid 65534 in a child process (no CAP_SETUID?)")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise value
    return value


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the ``nobody`` user can reach (pytest's tmp_path lives under a root-only 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="vp-watch-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for dirpath, dirs, _files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)


def test_permission_denied_on_a_folder_is_a_clear_error(shared_dir: Path) -> None:
    root = make_file_tree(shared_dir / "ds", 40)
    age(root)
    os.chmod(root / "labels" / "val", 0o000)
    with pytest.raises(WatchError, match="permission denied listing folder .*labels/val"):
        run_as_nobody(lambda: scan(root, None, settle_s=5))


# ------------------------------------------------------------------------------------- large folder


def test_large_nested_folder_idle_tick_does_not_list_files(tmp_path: Path) -> None:
    root = make_file_tree(tmp_path / "big", 20_000, per_dir=1000)
    cursor = scan(root, None, settle_s=0, full_scan_s=0).cursor  # settle_s=0: no need to age 20,000 files
    assert cursor.files == 20_001 and len(cursor.dirs) == 27
    assert len(cursor.to_json()) < 4000  # per directory, not per file
    idle = scan(root, cursor, settle_s=0, full_scan_s=0)
    assert not idle.changed and idle.dirs_rescanned == 0 and idle.files_listed == 0
    assert idle.seconds < 0.5, idle.describe()  # a sanity bound only; the timing target is in `make bench`
    write_old(root / "labels" / "train" / "0003" / "new.txt")
    changed = scan(root, cursor, settle_s=0, full_scan_s=0)
    assert changed.changed_dirs == ["labels/train/0003"]
    assert changed.dirs_rescanned == 1 and changed.files_listed == 1001


def test_bench_sensor_tick_reports_the_numbers(tmp_path: Path) -> None:
    out = bench_sensor_tick(2000, tmp_path, repeats=2)
    assert out["n_files"] == 2000 and out["one_new_file_dirs_rescanned"] == 1
    for key in ("first_scan_s", "idle_tick_s_median", "sensor_idle_tick_s_median", "cursor_bytes"):
        assert key in out
    json.dumps(out)


# ----------------------------------------------------------------------------------------- settings


def test_settings_from_env() -> None:
    s = WatchSettings.from_env({})
    assert s.folder is None and s.min_retrain_interval_s == 3600
    s = WatchSettings.from_env({"VISION_PIPELINE_WATCH_DIR": "/data/ds", "VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S": "60"})
    assert s.folder == Path("/data/ds") and s.min_retrain_interval_s == 60
    for value in ("soon", "-5", "inf"):
        with pytest.raises(WatchSettingsError, match="VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S"):
            WatchSettings.from_env({"VISION_PIPELINE_MIN_RETRAIN_INTERVAL_S": value})
