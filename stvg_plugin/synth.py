"""Synthetic STVG data: real H.264 videos of moving shapes with exact ground-truth tubes.

Why: tests, demos and a tiny-model smoke training need data whose answer is known to the pixel and
that needs no download. Each video shows a few coloured shapes on a slightly noisy background;
each query names one object by the fewest attributes (shape, colour, size, motion) that single it
out among *all* objects of its video. A queried object exists only during its span (it appears at
the span start and is gone at the span end), and the GT box on each frame is the box it was drawn
in (absolute-pixel xyxy, end-exclusive pixel edges, 0-based frames, end-exclusive span).

Objects never overlap while visible, nor on the frame just before/after each other's spans, so a
pixel at a GT box centre shows the target inside the span and never the target outside it.
Everything is drawn from ``numpy.random.default_rng([seed, video_index])``: same seed, same
annotation bytes and same rendered frames; the encoded files may differ by encoder noise only
(libx264 here is not bit-exact from run to run even single-threaded).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stvg_plugin.data import GroundingQuery, StvgError, atomic_path, frames_to_seconds, write_queries
from stvg_plugin.util.progress import progress_bar
from stvg_plugin.video import write_video

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
}
SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "still")
# object side as a fraction of the frame height: small stays >= ~5 px at a 32 x 32 model input
SIZE_FRACTION = {"small": 0.2, "large": 0.36}
MOTION_PHRASES = {m: f"moving {m}" for m in MOTIONS[:4]} | {"still": "that stays still"}
_ATTRIBUTE_SETS = [
    (),
    ("colour",),
    ("size",),
    ("motion",),
    ("size", "colour"),
    ("colour", "motion"),
    ("size", "motion"),
    ("size", "colour", "motion"),
]


@dataclass(frozen=True)
class SynthObject:
    """One drawn object: attributes, visible span ``[start, end)`` and its integer box per span frame."""

    shape: str
    colour: str
    size: str
    motion: str
    start: int
    end: int
    boxes: np.ndarray  # (end - start, 4) int xyxy

    def box_at(self, frame: int) -> np.ndarray:
        return self.boxes[frame - self.start]


def _shape_mask(shape: str, side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "circle":
        r = side / 2.0
        return (xx - r) ** 2 + (yy - r) ** 2 <= r * r
    # triangle, apex at the top centre, base on the bottom edge: the box centre lies inside
    half_width = (yy / side) * (side / 2.0)
    return np.abs(xx - side / 2.0) <= half_width


def _place(rng: np.random.Generator, motion: str, side: int, n: int, width: int, height: int) -> np.ndarray:
    """Boxes for ``n`` frames of straight constant-speed motion that stays inside the frame."""
    free_x, free_y = width - side, height - side
    x0, y0 = int(rng.integers(0, free_x + 1)), int(rng.integers(0, free_y + 1))
    x1, y1 = x0, y0
    if motion in ("left", "right"):
        dist = int(rng.integers(max(1, free_x // 3), free_x + 1))
        x0 = int(rng.integers(dist, free_x + 1)) if motion == "left" else int(rng.integers(0, free_x - dist + 1))
        x1 = x0 - dist if motion == "left" else x0 + dist
    elif motion in ("up", "down"):
        dist = int(rng.integers(max(1, free_y // 3), free_y + 1))
        y0 = int(rng.integers(dist, free_y + 1)) if motion == "up" else int(rng.integers(0, free_y - dist + 1))
        y1 = y0 - dist if motion == "up" else y0 + dist
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    xs = np.rint(x0 + (x1 - x0) * t).astype(np.int64)
    ys = np.rint(y0 + (y1 - y0) * t).astype(np.int64)
    return np.stack([xs, ys, xs + side, ys + side], axis=1)


def _padded_track(obj: SynthObject, num_frames: int) -> dict[int, np.ndarray]:
    """The object's boxes, extended by one frame either side (its last/first box held)."""
    track = {f: obj.box_at(f) for f in range(obj.start, obj.end)}
    if obj.start > 0:
        track[obj.start - 1] = obj.boxes[0]
    if obj.end < num_frames:
        track[obj.end] = obj.boxes[-1]
    return track


def _collides(a: SynthObject, b: SynthObject, num_frames: int, margin: int = 2) -> bool:
    ta, tb = _padded_track(a, num_frames), _padded_track(b, num_frames)
    for f in ta.keys() & tb.keys():
        ba, bb = ta[f], tb[f]
        if ba[0] < bb[2] + margin and bb[0] < ba[2] + margin and ba[1] < bb[3] + margin and bb[1] < ba[3] + margin:
            return True
    return False


def _describe(target: int, objects: list[SynthObject], rng: np.random.Generator) -> tuple[str, list[str]]:
    """Shortest unique description most of the time, a longer unique one otherwise (variety).

    Returns the text and the attributes it *needs*: those named whose word, dropped, would leave
    another object of the video fitting the description (per-attribute analyses of a model, e.g.
    "does it read colour words", group queries by these; examples/learnability.md).
    """

    def matches(obj: SynthObject, attrs: tuple[str, ...], ref: SynthObject) -> bool:
        return obj.shape == ref.shape and all(getattr(obj, a) == getattr(ref, a) for a in attrs)

    ref = objects[target]
    unique = [attrs for attrs in _ATTRIBUTE_SETS if sum(matches(o, attrs, ref) for o in objects) == 1]
    if not unique:  # cannot happen: attribute tuples are distinct per video
        raise StvgError(f"no unique description for object {target}")
    shortest = [a for a in unique if len(a) == len(unique[0])]
    pool = shortest if rng.random() < 0.6 else unique
    attrs = pool[int(rng.integers(0, len(pool)))]
    words = ["the"]
    if "size" in attrs:
        words.append(ref.size)
    if "colour" in attrs:
        words.append(ref.colour)
    words.append(ref.shape)
    if "motion" in attrs:
        words.append(MOTION_PHRASES[ref.motion])
    needed = [a for a in attrs if sum(matches(o, tuple(b for b in attrs if b != a), ref) for o in objects) > 1]
    return " ".join(words), needed



def _prefer_same_shape(
    order: np.ndarray, combos: list[tuple], num_targets: int, num_distractors: int, p: float, rng: np.random.Generator
) -> list[int]:
    """``order`` with each distractor slot taken, with probability ``p``, by the next unused combination of
    the first target's shape (the rest keep their order, as fallbacks when a placement fails)."""
    head, rest = [int(i) for i in order[:num_targets]], [int(i) for i in order[num_targets:]]
    shape = combos[head[0]][0]
    picked: list[int] = []
    for _ in range(num_distractors):
        same = rng.random() < p
        for i in rest:
            if i not in picked and (not same or combos[i][0] == shape):
                picked.append(i)
                break
    return head + picked + [i for i in rest if i not in picked]

def _make_objects(
    rng: np.random.Generator,
    num_frames: int,
    width: int,
    height: int,
    num_targets: int,
    num_distractors: int,
    span_fraction: tuple[float, float],
    same_shape_distractors: float = 0.0,
) -> list[SynthObject]:
    """Targets first (each with a partial span), then distractors; rejection-sampled to never collide.

    ``same_shape_distractors``: the probability that a distractor takes the first target's shape, so
    that the query needs its colour, size or motion word (0: shapes drawn like the other attributes,
    and the random stream, hence the dataset, is the one this option did not exist for).
    """
    combos = list(itertools.product(SHAPES, COLOURS, SIZES, MOTIONS))
    order = rng.permutation(len(combos))
    if same_shape_distractors > 0 and num_distractors > 0:
        order = _prefer_same_shape(order, combos, num_targets, num_distractors, same_shape_distractors, rng)
    objects: list[SynthObject] = []
    for k, combo_idx in enumerate(order):
        is_target = len(objects) < num_targets
        if len(objects) == num_targets + num_distractors or k > 4 * (num_targets + num_distractors) + 20:
            break
        shape, colour, size, motion = combos[combo_idx]
        side = max(4, int(round(SIZE_FRACTION[size] * height)))
        for _ in range(60):
            if is_target or rng.random() < 0.5:
                lo, hi = span_fraction
                length = max(2, int(round(rng.uniform(lo, hi) * num_frames)))
                start = int(rng.integers(0, num_frames - length + 1))
            else:  # a distractor on screen the whole time
                start, length = 0, num_frames
            boxes = _place(rng, motion, side, length, width, height)
            obj = SynthObject(shape, colour, size, motion, start, start + length, boxes)
            if not any(_collides(obj, other, num_frames) for other in objects):
                objects.append(obj)
                break
    if len(objects) < num_targets:
        raise StvgError(f"could not place {num_targets} non-overlapping objects in {width}x{height}")
    return objects


def _background(rng: np.random.Generator, width: int, height: int, noise: float) -> np.ndarray:
    grey = rng.integers(90, 150)
    tint = rng.integers(-10, 11, size=3)
    base = np.clip(grey + tint, 0, 255).astype(np.float64)
    texture = rng.normal(0.0, noise, size=(height, width, 1)) if noise > 0 else 0.0
    return np.clip(base[None, None, :] + texture, 0, 255).astype(np.uint8)


def render_frames(objects: list[SynthObject], background: np.ndarray, num_frames: int) -> Iterator[np.ndarray]:
    """Yield frames one at a time (memory stays one frame however long the video)."""
    masks = {(o.shape, int(o.boxes[0, 2] - o.boxes[0, 0])) for o in objects}
    masks = {key: _shape_mask(*key) for key in masks}
    for f in range(num_frames):
        frame = background.copy()
        for o in objects:
            if o.start <= f < o.end:
                x1, y1, x2, y2 = (int(v) for v in o.box_at(f))
                frame[y1:y2, x1:x2][masks[(o.shape, x2 - x1)]] = COLOURS[o.colour]
        yield frame


def _make_video(
    out: Path,
    seed: int,
    v: int,
    *,
    width: int,
    height: int,
    fps: float,
    duration_s: tuple[float, float],
    max_queries_per_video: int,
    max_distractors: int,
    span_fraction: tuple[float, float],
    noise: float,
    same_shape_distractors: float = 0.0,
) -> list[GroundingQuery]:
    """Draw, render and encode video ``v`` of a set; returns its queries (module-level: picklable)."""
    rng = np.random.default_rng([seed, v])
    num_frames = max(4, int(round(rng.uniform(*duration_s) * fps)))
    num_targets = int(rng.integers(1, max_queries_per_video + 1))
    num_distractors = int(rng.integers(1, max_distractors + 1)) if max_distractors > 0 else 0
    objects = _make_objects(rng, num_frames, width, height, num_targets, num_distractors, span_fraction,
                            same_shape_distractors)
    background = _background(rng, width, height, noise)
    video_path = out / f"video_{v:04d}.mp4"
    write_video(video_path, render_frames(objects, background, num_frames), fps, threads=1)
    return [
        _to_query(v, q, obj, *_describe(q, objects, rng), video_path, fps, num_frames, width, height,
                  others=[o for o in objects if o is not obj])
        for q, obj in enumerate(objects[:num_targets])
    ]


def generate_synthetic(
    output_dir: str | os.PathLike,
    num_videos: int = 6,
    seed: int = 0,
    *,
    width: int = 160,
    height: int = 120,
    fps: float = 10.0,
    duration_s: tuple[float, float] = (6.0, 10.0),
    max_queries_per_video: int = 3,
    max_distractors: int = 2,
    span_fraction: tuple[float, float] = (0.3, 0.7),
    noise: float = 6.0,
    write_hcstvg_json: bool = True,
    workers: int = 1,
    progress: bool = False,
    same_shape_distractors: float = 0.0,
) -> Path:
    """Write ``video_XXXX.mp4`` files, ``annotations.jsonl`` (unified) and ``hcstvg.json`` into ``output_dir``.

    Returns the path of ``annotations.jsonl`` (byte-identical for a seed, whatever ``workers``; see
    the module docstring for the videos). ``workers`` > 1 renders and encodes videos in that many
    processes (``make demo`` writes 1 500+ videos). ``progress``: a bar over the videos written.
    ``same_shape_distractors``: probability that a distractor shares the target's shape (0 by default:
    then most queries need only the shape word; a training set with more makes the colour, size and
    motion words matter, examples/learnability.md session 5).
    """
    if not 0.0 <= same_shape_distractors <= 1.0:
        raise ValueError(f"same_shape_distractors must be in [0, 1], got {same_shape_distractors}")
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if max_queries_per_video < 1:
        raise ValueError(f"max_queries_per_video must be >= 1, got {max_queries_per_video}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if width % 2 or height % 2 or min(width, height) < 16:
        raise ValueError(f"width and height must be even and >= 16, got {width}x{height}")
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    make = functools.partial(
        _make_video, out, seed, width=width, height=height, fps=fps, duration_s=duration_s,
        max_queries_per_video=max_queries_per_video, max_distractors=max_distractors,
        span_fraction=span_fraction, noise=noise, same_shape_distractors=same_shape_distractors,
    )  # fmt: skip
    queries: list[GroundingQuery] = []
    bar = progress_bar(total=num_videos, desc=f"synthesizing {out.name}", unit="video", disable=not progress)
    if workers <= 1 or num_videos < 2 * workers:
        for v in range(num_videos):
            queries.extend(make(v))
            bar.update()
    else:  # each video has its own rng, so the result does not depend on who draws it
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for video_queries in pool.map(make, range(num_videos), chunksize=16):
                queries.extend(video_queries)
                bar.update()
    bar.close()
    annotations = out / "annotations.jsonl"
    write_queries(annotations, queries, relative_to=str(out))
    if write_hcstvg_json:
        from stvg_plugin.adapters.hcstvg import write_hcstvg  # imported late: adapters are optional here

        write_hcstvg(out / "hcstvg.json", queries, version=1)
    return annotations


def _track(obj: SynthObject) -> dict[int, list[float]]:
    """The object's box (absolute xyxy) per frame of its span, as a query's ``boxes``."""
    return {f: [float(c) for c in obj.box_at(f)] for f in range(obj.start, obj.end)}


def _to_query(
    v: int, q: int, obj: SynthObject, text: str, needed: list[str], video_path: Path, fps: float, num_frames: int,
    width: int, height: int, others: Sequence[SynthObject] = (),
) -> GroundingQuery:
    """The query for target ``obj``; ``extra["synthetic"]`` holds its attributes, the attributes its text
    needs, and the other objects of the video (attributes, frame span and boxes: what a swapped word may
    name, and where a model that read it should put its box; stvg_plugin.training.attribute_probe)."""
    boxes = _track(obj)
    fps_value = float(Fraction(fps).limit_denominator(1001))
    return GroundingQuery(
        qid=f"synth_{v:04d}_{q}",
        video=str(video_path),
        query=text,
        task="stvg",
        fps=fps_value,
        num_frames=num_frames,
        width=width,
        height=height,
        span_frames=(obj.start, obj.end),
        span_s=frames_to_seconds(obj.start, obj.end, fps_value),
        boxes=boxes,
        qtype="declarative",
        video_id=f"video_{v:04d}",
        extra={
            "synthetic": {
                "shape": obj.shape,
                "colour": obj.colour,
                "size": obj.size,
                "motion": obj.motion,
                "rgb": list(COLOURS[obj.colour]),
                "needed": needed,
                "others": [{"shape": o.shape, "colour": o.colour, "size": o.size, "motion": o.motion,
                            "span_frames": [o.start, o.end], "boxes": _track(o)} for o in others],
            }
        },
    )


# --------------------------------------------------------------------------- fault injection


def write_bad_videos(directory: str | os.PathLike) -> dict[str, Path]:
    """Broken inputs for fault-injection tests; every one but ``single_frame`` must fail to read.

    ``truncated`` keeps its index (faststart) but loses the second half of its frame data;
    ``resolution_change`` is an MPEG-TS stream whose frame size changes from 160x120 to 96x64.
    ``missing`` is a path that does not exist.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = {name: d / f"{name}.mp4" for name in ("zero_byte", "truncated", "not_a_video", "single_frame", "missing")}
    paths["resolution_change"] = d / "resolution_change.ts"
    paths["zero_byte"].write_bytes(b"")
    paths["not_a_video"].write_text("this is a text file, not a video\n", encoding="utf-8")
    noisy = [rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8) for _ in range(40)]
    full = d / "full_for_truncation.mp4"
    write_video(full, noisy, 10.0, threads=1)
    data = full.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    full.unlink()
    write_video(paths["single_frame"], noisy[:1], 10.0, threads=1)
    _write_resolution_change(paths["resolution_change"])
    if paths["missing"].exists():
        paths["missing"].unlink()
    return paths


def _write_resolution_change(path: Path, fps: int = 10) -> None:
    """Two H.264 encoders feeding one MPEG-TS stream: the size in the headers no longer holds."""
    import av

    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 50 + i, np.uint8), "rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        second = av.CodecContext.create("libx264", "w")
        second.width, second.height, second.pix_fmt = 96, 64, "yuv420p"
        second.time_base, second.framerate = Fraction(1, fps), Fraction(fps)
        for i in range(10 + 1):
            frame = None
            if i < 10:
                frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 200, np.uint8), "rgb24")
                frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in second.encode(frame):
                packet.stream = stream
                packet.pts, packet.dts = packet.pts + 10, packet.dts + 10
                packet.time_base = Fraction(1, fps)
                container.mux(packet)
