"""A small, deterministic synthetic YOLO detection dataset (numpy + Pillow only).

Each image holds 1-3 non-overlapping filled shapes (circle, square, triangle, ...) whose bounding
box side is 15-45 % of the image side, drawn in a colour that contrasts with the background
(solid colour, linear gradient, gaussian noise or smooth blobs). Labels are the exact tight boxes
of the drawn pixels. Same arguments => byte-identical files, so the dataset content hash is stable.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from vision_pipeline.vision.errors import VisionInputError

SPLITS = ("train", "val")
MIN_SIZE_FRACTION = 0.15
MAX_SIZE_FRACTION = 0.45
_MIN_COLOUR_DISTANCE = 120.0  # Euclidean RGB distance between object colour and the background under it
_GAP = 2  # pixels kept free between the boxes of two objects

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
_Drawer = Callable[[ImageDraw.ImageDraw, Box, np.random.Generator], None]


def _draw_circle(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)


def _regular_polygon(box: Box, sides: int, rotation: float, radii: Sequence[float] = (1.0,)) -> list[tuple[float, float]]:
    """Vertices of a (star-)polygon scaled so its extent fills ``box`` along the longer axis."""
    count = sides * len(radii)
    unit = [
        (radii[k % len(radii)] * math.cos(rotation + 2 * math.pi * k / count),
         radii[k % len(radii)] * math.sin(rotation + 2 * math.pi * k / count))
        for k in range(count)
    ]
    xs, ys = [p[0] for p in unit], [p[1] for p in unit]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    x0, y0, x1, y1 = box
    scale = (min(x1 - x0, y1 - y0) - 1) / max(width, height)
    off_x = x0 + (x1 - 1 - x0 - width * scale) / 2 - min(xs) * scale
    off_y = y0 + (y1 - 1 - y0 - height * scale) / 2 - min(ys) * scale
    return [(off_x + x * scale, off_y + y * scale) for x, y in unit]


def _draw_square(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    # Up to +-20 degrees: clearly a square, never a diamond that could pass for a rotated triangle.
    rotation = math.pi / 4 + math.radians(float(rng.uniform(-20.0, 20.0)))
    draw.polygon(_regular_polygon(box, 4, rotation), fill=255)


def _draw_triangle(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    draw.polygon(_regular_polygon(box, 3, float(rng.uniform(0.0, 2 * math.pi))), fill=255)


def _draw_hexagon(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    draw.polygon(_regular_polygon(box, 6, float(rng.uniform(0.0, math.pi / 3))), fill=255)


def _draw_star(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    draw.polygon(_regular_polygon(box, 5, float(rng.uniform(0.0, 2 * math.pi)), radii=(1.0, 0.45)), fill=255)


def _draw_cross(draw: ImageDraw.ImageDraw, box: Box, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    arm = max(2, (x1 - x0) // 3)
    cx0 = x0 + (x1 - x0 - arm) // 2
    cy0 = y0 + (y1 - y0 - arm) // 2
    draw.rectangle((cx0, y0, cx0 + arm - 1, y1 - 1), fill=255)
    draw.rectangle((x0, cy0, x1 - 1, cy0 + arm - 1), fill=255)


SHAPES: dict[str, _Drawer] = {
    "circle": _draw_circle,
    "square": _draw_square,
    "triangle": _draw_triangle,
    "hexagon": _draw_hexagon,
    "star": _draw_star,
    "cross": _draw_cross,
}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """An ``size x size x 3`` float background: solid, gradient, noise or smooth blobs."""
    kind = int(rng.integers(0, 4))
    base = rng.uniform(0, 255, size=3)
    if kind == 0:
        return np.broadcast_to(base, (size, size, 3)).astype(np.float64)
    if kind == 1:
        other = rng.uniform(0, 255, size=3)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        return base + (other - base) * t[..., None]
    if kind == 2:
        noise = rng.normal(0.0, rng.uniform(8, 30), size=(size, size, 3))
        return base + noise
    grid = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(grid, "RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)


def _overlaps(box: Box, others: list[Box]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + _GAP and b[0] < x1 + _GAP and y0 < b[3] + _GAP and b[1] < y1 + _GAP for b in others)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour far from the mean background colour ``under`` (black/white as a fallback)."""
    for _ in range(20):
        colour = rng.integers(0, 256, size=3).astype(np.float64)
        if float(np.linalg.norm(colour - under)) >= _MIN_COLOUR_DISTANCE:
            return colour
    black, white = np.zeros(3), np.full(3, 255.0)
    return black if np.linalg.norm(under - black) > np.linalg.norm(under - white) else white


def _render(rng: np.random.Generator, imgsz: int, n_classes: int, drawers: list[_Drawer]) -> tuple[Image.Image, list[str]]:
    """Draw one image; return it with its YOLO label lines."""
    canvas = np.clip(_background(rng, imgsz), 0, 255)
    lo = max(4, round(MIN_SIZE_FRACTION * imgsz))
    hi = max(lo, round(MAX_SIZE_FRACTION * imgsz))
    placed: list[Box] = []
    lines: list[str] = []
    for _ in range(int(rng.integers(1, 4))):
        side = int(rng.integers(lo, hi + 1))
        for _attempt in range(30):
            x0 = int(rng.integers(0, imgsz - side + 1))
            y0 = int(rng.integers(0, imgsz - side + 1))
            box = (x0, y0, x0 + side, y0 + side)
            if not _overlaps(box, placed):
                break
        else:
            continue  # no room left for this object: the image keeps fewer objects
        class_id = int(rng.integers(0, n_classes))
        mask_img = Image.new("L", (imgsz, imgsz), 0)
        drawers[class_id](ImageDraw.Draw(mask_img), box, rng)
        tight = mask_img.getbbox()
        if tight is None:  # cannot happen for sizes >= 4 px; keep labels honest regardless
            continue
        mask = np.asarray(mask_img) > 0
        colour = _contrasting_colour(rng, canvas[mask].mean(axis=0))
        canvas[mask] = colour
        placed.append(box)
        bx0, by0, bx1, by1 = tight
        cx, cy = (bx0 + bx1) / 2 / imgsz, (by0 + by1) / 2 / imgsz
        w, h = (bx1 - bx0) / imgsz, (by1 - by0) / imgsz
        lines.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return Image.fromarray(np.round(canvas).astype(np.uint8), "RGB"), lines


def generate_synthetic_dataset(
    dest: Path,
    *,
    n_train: int = 320,
    n_val: int = 80,
    imgsz: int = 128,
    seed: int = 0,
    class_names: Sequence[str] = ("circle", "square", "triangle"),
) -> Path:
    """Write a YOLO detection dataset into ``dest`` and return the path of its ``data.yaml``.

    Layout: ``data.yaml`` (relative ``train``/``val``, ``names``, ``nc``; no ``path`` key, so
    ultralytics resolves the splits against the yaml's folder), ``images/{train,val}/img_NNNN.png``
    and ``labels/{train,val}/img_NNNN.txt``. ``class_names`` must be shape names from
    :data:`SHAPES`. Any previous ``data.yaml``, ``images/`` and ``labels/`` in ``dest`` are replaced.
    Every image has its own random stream derived from ``(seed, split, index)``.
    """
    names = [str(n) for n in class_names]
    unknown = [n for n in names if n not in SHAPES]
    if not names or unknown:
        raise VisionInputError(f"class_names must be a non-empty subset of {sorted(SHAPES)}; got {names}")
    if len(set(names)) != len(names):
        raise VisionInputError(f"class_names contains duplicates: {names}")
    if n_train < 1 or n_val < 1:
        raise VisionInputError(f"n_train and n_val must be >= 1; got {n_train}, {n_val}")
    if seed < 0:
        raise VisionInputError(f"seed must be >= 0; got {seed}")
    if imgsz < 32:
        raise VisionInputError(f"imgsz must be >= 32; got {imgsz}")
    drawers = [SHAPES[n] for n in names]

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in ("images", "labels"):
        if (dest / stale).exists():
            shutil.rmtree(dest / stale)
    for split_index, (split, count) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        image_dir, label_dir = dest / "images" / split, dest / "labels" / split
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        width = max(4, len(str(count - 1)))
        for index in range(count):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, index)))
            image, lines = _render(rng, imgsz, len(names), drawers)
            stem = f"img_{index:0{width}d}"
            image.save(image_dir / f"{stem}.png", format="PNG", optimize=False, compress_level=6)
            (label_dir / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    data = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    yaml_path = dest / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return yaml_path
