"""Validate, hash and stage YOLO detection datasets (``data.yaml`` + ``images/`` + ``labels/``).

Conventions (those of ultralytics): the splits in ``data.yaml`` are image folders, resolved
against the yaml's ``path`` key (a relative ``path`` is taken relative to the yaml's folder here),
or against the yaml's folder when ``path`` is absent; the label of ``.../images/.../x.png`` is
``.../labels/.../x.txt``. Every bad input raises :class:`VisionInputError` naming file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from vision_pipeline.vision.errors import VisionInputError
from vision_pipeline.vision.synthetic import generate_synthetic_dataset

DATA_YAML = "data.yaml"
REQUIRED_SPLITS = ("train", "val")
OPTIONAL_SPLITS = ("test",)
# Formats ultralytics trains on that Pillow can decode; the others are refused rather than skipped.
IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
UNSUPPORTED_IMAGE_SUFFIXES = frozenset({".dng", ".pfm", ".heic"})
_MIN_IMAGE_SIDE = 10  # ultralytics rejects images with a side below 10 px
_CHUNK = 1 << 20


@dataclass
class DatasetStats:
    """What :func:`validate_dataset` found. ``instances[split][class_name]`` counts boxes."""

    root: Path
    class_names: list[str]
    images: dict[str, int]
    instances: dict[str, dict[str, int]]
    content_hash: str
    backgrounds: dict[str, int] = field(default_factory=dict)  # images without any box, per split

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (``root`` as a string)."""
        data = asdict(self)
        data["root"] = str(self.root)
        return data


@dataclass(frozen=True)
class _DataConfig:
    yaml_path: Path
    data: dict[str, Any]
    base: Path
    class_names: list[str]
    splits: dict[str, list[Path]]  # split -> image folders (absolute)


def _display(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root when possible (short, copy-independent messages)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _parse_names(data: dict[str, Any], where: str) -> list[str]:
    names = data.get("names")
    if isinstance(names, list):
        result = [str(n) for n in names]
    elif isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise VisionInputError(f"'names' keys must be integer class ids: {exc}", path=where) from exc
        if keys != list(range(len(keys))):
            raise VisionInputError(f"'names' ids must be 0..{len(keys) - 1} without gaps; got {keys}", path=where)
        by_id = {int(k): str(v) for k, v in names.items()}
        result = [by_id[i] for i in keys]
    elif names is None:
        raise VisionInputError("missing 'names' (list of class names or mapping id -> name)", path=where)
    else:
        raise VisionInputError(f"'names' must be a list or a mapping id -> name, not {type(names).__name__}", path=where)
    if not result:
        raise VisionInputError("'names' is empty", path=where)
    if len(set(result)) != len(result):
        raise VisionInputError(f"'names' contains duplicates: {result}", path=where)
    nc = data.get("nc")
    if nc is not None:
        try:  # integer-like values (3, 3.0, '3') are accepted, as ultralytics does
            nc_value = float(nc)
        except (TypeError, ValueError):
            nc_value = float("nan")
        if isinstance(nc, bool) or not nc_value.is_integer():
            raise VisionInputError(f"'nc' must be an integer, not {nc!r}", path=where)
        if int(nc_value) != len(result):
            raise VisionInputError(f"'nc' is {nc!r} but 'names' lists {len(result)} classes", path=where)
    return result


def _load_config(root: Path) -> _DataConfig:
    """Read and check ``root/data.yaml`` (structure only, no image or label is opened)."""
    root = Path(root)
    yaml_path = root / DATA_YAML
    where = str(yaml_path)
    if not root.is_dir():
        raise VisionInputError("dataset folder does not exist", path=root)
    if not yaml_path.is_file():
        raise VisionInputError(f"missing {DATA_YAML}", path=root)
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise VisionInputError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path=where, line=line) from exc
    except UnicodeDecodeError as exc:
        raise VisionInputError(f"not UTF-8 text: {exc}", path=where) from exc
    if not isinstance(data, dict):
        raise VisionInputError("top level must be a mapping", path=where)
    class_names = _parse_names(data, where)

    raw_base = data.get("path")
    if raw_base in (None, ""):
        base = yaml_path.parent
    elif isinstance(raw_base, str):
        base = Path(raw_base).expanduser()
        base = base if base.is_absolute() else yaml_path.parent / base
    else:
        raise VisionInputError(f"'path' must be a string, not {type(raw_base).__name__}", path=where)
    base = base.resolve()
    if not base.is_dir():
        raise VisionInputError(f"'path' folder {base} does not exist", path=where)

    splits: dict[str, list[Path]] = {}
    for split in REQUIRED_SPLITS + OPTIONAL_SPLITS:
        raw = data.get(split)
        if raw in (None, "", []):
            if split in REQUIRED_SPLITS:
                raise VisionInputError(f"missing required split '{split}'", path=where)
            continue
        entries = raw if isinstance(raw, list) else [raw]
        folders: list[Path] = []
        for entry in entries:
            if not isinstance(entry, str):
                raise VisionInputError(f"split '{split}' must be a folder path or a list of them", path=where)
            folder = Path(entry).expanduser()
            folder = (folder if folder.is_absolute() else base / folder).resolve()
            if not folder.is_dir():
                raise VisionInputError(f"split '{split}' folder {entry} does not exist (resolved to {folder})", path=where)
            folders.append(folder)
        splits[split] = folders
    return _DataConfig(yaml_path=yaml_path, data=data, base=base, class_names=class_names, splits=splits)


def _label_path(image: Path) -> Path:
    """ultralytics' ``img2label_paths``: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(text).with_suffix(".txt")


def _label_folder(image_folder: Path) -> Path:
    return _label_path(image_folder / "x").parent


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | UNSUPPORTED_IMAGE_SUFFIXES)


def _check_image(image: Path, shown: str) -> None:
    if image.suffix.lower() in UNSUPPORTED_IMAGE_SUFFIXES:
        raise VisionInputError(f"unsupported image format {image.suffix}", path=shown)
    try:
        with Image.open(image) as img:
            img.verify()  # structure and checksums (catches truncated PNG data)
        with Image.open(image) as img:
            img.load()  # full decode
            width, height = img.size
    except Exception as exc:  # noqa: BLE001 - Pillow decoders raise many types (OSError, SyntaxError, struct.error, ...)
        raise VisionInputError(f"unreadable or corrupt image: {exc}", path=shown) from exc
    if min(width, height) < _MIN_IMAGE_SIDE:
        raise VisionInputError(f"image is {width}x{height}, smaller than {_MIN_IMAGE_SIDE} px on a side", path=shown)
    if image.suffix.lower() in {".jpg", ".jpeg"}:
        with image.open("rb") as fh:
            fh.seek(-2, os.SEEK_END)
            if fh.read(2) != b"\xff\xd9":
                raise VisionInputError("corrupt JPEG: missing end-of-image marker (truncated file?)", path=shown)


def _check_labels(label: Path, shown: str, nc: int) -> list[int]:
    """Check every line of one label file; return its class ids."""
    try:
        text = label.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VisionInputError(f"label file is not UTF-8 text: {exc}", path=shown) from exc
    class_ids: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise VisionInputError(
                f"expected 5 fields 'class cx cy w h', got {len(fields)}", path=shown, line=number
            )
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise VisionInputError(f"not a number: {exc}", path=shown, line=number) from exc
        raw_class, cx, cy, w, h = values
        if not raw_class.is_integer():
            raise VisionInputError(f"class id {fields[0]} is not an integer", path=shown, line=number)
        class_id = int(raw_class)
        if not 0 <= class_id < nc:
            raise VisionInputError(f"class id {class_id} out of range [0, {nc})", path=shown, line=number)
        for name, text_value, value in zip(("cx", "cy", "w", "h"), fields[1:], values[1:], strict=True):
            if not 0.0 <= value <= 1.0:  # also rejects nan
                raise VisionInputError(f"{name} {text_value} outside [0, 1]", path=shown, line=number)
        if w <= 0.0 or h <= 0.0:
            raise VisionInputError(f"box has zero size (w={fields[3]}, h={fields[4]})", path=shown, line=number)
        class_ids.append(class_id)
    return class_ids


def validate_dataset(root: Path) -> DatasetStats:
    """Check ``root/data.yaml``, every image and every label line; return the dataset's stats.

    Images without a label file are backgrounds (allowed); a label file without its image, an
    empty split, a corrupt image or a bad label line raise :class:`VisionInputError`.
    """
    root = Path(root)
    config = _load_config(root)
    nc = len(config.class_names)
    images: dict[str, int] = {}
    instances: dict[str, dict[str, int]] = {}
    backgrounds: dict[str, int] = {}
    for split, folders in config.splits.items():
        counts = [0] * nc
        n_images = n_backgrounds = 0
        for folder in folders:
            image_files = _image_files(folder)
            expected_labels = {_label_path(p) for p in image_files}
            for image in image_files:
                _check_image(image, _display(image, config.base))
                n_images += 1
                label = _label_path(image)
                ids = _check_labels(label, _display(label, config.base), nc) if label.is_file() else []
                if not ids:
                    n_backgrounds += 1
                for class_id in ids:
                    counts[class_id] += 1
            label_folder = _label_folder(folder)
            if label_folder.is_dir():
                for label in sorted(label_folder.rglob("*.txt")):
                    if label not in expected_labels:
                        raise VisionInputError(
                            "label file has no matching image", path=_display(label, config.base)
                        )
        if n_images == 0:
            shown = ", ".join(_display(f, config.base) for f in folders)
            raise VisionInputError(f"split '{split}' has no images (in {shown})", path=str(config.yaml_path))
        images[split] = n_images
        backgrounds[split] = n_backgrounds
        instances[split] = dict(zip(config.class_names, counts, strict=True))
    return DatasetStats(
        root=root,
        class_names=list(config.class_names),
        images=images,
        instances=instances,
        content_hash=_hash_config(config),
        backgrounds=backgrounds,
    )


def _hashed_files(config: _DataConfig) -> Iterator[tuple[str, Path]]:
    """(stable name, path) of every image and label file of every split, sorted by name, deduplicated."""
    found: dict[str, Path] = {}
    for split, folders in config.splits.items():
        for folder in folders:
            label_folder = _label_folder(folder)
            candidates = _image_files(folder)
            if label_folder.is_dir():
                candidates += [p for p in label_folder.rglob("*.txt") if p.is_file()]
            for path in candidates:
                try:
                    name = path.relative_to(config.base).as_posix()
                except ValueError:  # split folder outside the dataset root: name it by split instead
                    anchor = folder if path.is_relative_to(folder) else label_folder
                    name = f"<{split}>/{path.relative_to(anchor).as_posix()}"
                found[name] = path
    yield from sorted(found.items())


def _canonical(value: Any) -> Any:
    """JSON-ready copy of parsed YAML with every mapping key as a string (so keys always sort)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _hash_config(config: _DataConfig) -> str:
    digest = hashlib.sha256()
    # data.yaml enters in canonical form without 'path', so staging a copy elsewhere keeps the hash.
    canonical = _canonical({k: v for k, v in config.data.items() if k != "path"})
    digest.update(b"data.yaml\0")
    digest.update(json.dumps(canonical, sort_keys=True).encode("utf-8"))
    for name, path in _hashed_files(config):
        digest.update(b"\0file\0" + name.encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def content_hash(root: Path) -> str:
    """SHA-256 (hex) of the dataset: ``data.yaml`` (canonical, without ``path``) plus the relative
    path and bytes of every image and label file. Independent of mtimes and of where the folder lives.
    """
    return _hash_config(_load_config(Path(root)))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _relativise_yaml(staging: Path, source: Path) -> dict[str, Any]:
    """Make the copied ``data.yaml`` self-contained: ``path`` and splits relative to the copy."""
    yaml_path = staging / DATA_YAML
    config = _load_config(source)  # resolves 'path' and the splits against the original location
    source = source.resolve()

    def inside(path: Path, what: str) -> str:
        try:
            return path.relative_to(source).as_posix() or "."
        except ValueError:
            raise VisionInputError(
                f"{what} {path} lies outside the dataset folder {source}; the dataset must be self-contained",
                path=str(source / DATA_YAML),
            ) from None

    data = dict(config.data)
    base_rel = inside(config.base, "'path'")
    if base_rel == ".":
        data.pop("path", None)
    else:
        data["path"] = base_rel
    for split, folders in config.splits.items():
        rel = [Path(os.path.relpath(source / inside(f, f"split '{split}'"), config.base)).as_posix() for f in folders]
        data[split] = rel[0] if not isinstance(config.data[split], list) else rel
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data


def prepare_dataset(
    dest: Path,
    source: Path | None = None,
    *,
    synthetic_kwargs: dict[str, Any] | None = None,
) -> DatasetStats:
    """Stage a validated dataset in ``dest`` and return its stats.

    ``source=None`` generates the synthetic dataset (``synthetic_kwargs`` go to
    :func:`generate_synthetic_dataset`); otherwise the folder ``source`` (holding ``data.yaml``) is
    copied. The dataset is built in a sibling temporary folder, validated, then renamed to ``dest``
    (replacing what was there); ``dest/data.yaml`` gets an absolute ``path`` so training from it
    works from any working directory. A missing or overlapping ``source`` is refused before
    anything is touched; any later failure (copy, generation, validation) removes ``dest`` too,
    so a stale dataset is never left looking valid.
    """
    dest = Path(os.path.abspath(Path(dest).expanduser()))  # not resolve(): a symlinked dest is replaced, not followed
    if source is not None:
        source = Path(source).expanduser().resolve()
        if not source.is_dir():
            raise VisionInputError("source dataset folder does not exist", path=source)
        if not (source / DATA_YAML).is_file():
            raise VisionInputError(f"source dataset folder has no {DATA_YAML}", path=source)
        if dest == source or dest.is_relative_to(source) or source.is_relative_to(dest):
            raise VisionInputError(f"destination {dest} overlaps the source folder", path=source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        if source is None:
            generate_synthetic_dataset(staging, **(synthetic_kwargs or {}))
            data = yaml.safe_load((staging / DATA_YAML).read_text(encoding="utf-8"))
        else:
            shutil.copytree(source, staging, ignore=shutil.ignore_patterns("*.cache"), symlinks=False)
            data = _relativise_yaml(staging, source)
        stats = validate_dataset(staging)
        # Absolute 'path': ultralytics resolves a relative one against the cwd, a missing one
        # against the yaml path as passed (relative if the caller passed a relative path).
        final = {"path": str(dest / data.get("path", "."))}
        final.update((k, v) for k, v in data.items() if k != "path")
        (staging / DATA_YAML).write_text(yaml.safe_dump(final, sort_keys=False), encoding="utf-8")
        if dest.exists() or dest.is_symlink():
            trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, trash)
            os.replace(staging, dest)
            _remove(trash)
        else:
            os.replace(staging, dest)
    except BaseException:
        _remove(staging)
        _remove(dest)
        raise
    stats.root = dest
    return stats
