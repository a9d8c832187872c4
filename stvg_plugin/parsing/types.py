"""What a parse takes and gives: the caller's :class:`CoordHint` and the :class:`ParsedAnswer` it gets
back, plus the two records the parsing stages pass to each other (``_RawBox``, ``_Context``).

Why a module of its own: every stage (spans, JSON, boxes, placement) reads these, so they sit below all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stvg_plugin.data import GroundingPrediction

TIME_UNITS = ("seconds", "frames", "fraction")
BOX_SCALES = ("relative", "permille", "pixels", "percent")
BOX_ORDERS = ("xyxy", "yxyx")


@dataclass(frozen=True)
class CoordHint:
    """What the prompt asked for, so ambiguous numbers are read in the right unit.

    ``time_unit``: ``seconds`` | ``frames`` (indices of the listed sampled frames) | ``fraction``
    (of the duration) | ``None`` (auto: seconds, or fractions when both ends are decimals in [0, 1]).
    ``box_scale``: ``relative`` (0-1) | ``permille`` (0-1000, Qwen2-VL style) | ``pixels`` (of the
    processed frame) | ``percent`` | ``None`` (auto). ``index_base``: 1 when the prompt numbered frames
    from 1 ("Frame 1 at 0.50 s"). ``box_order``: ``xyxy`` or ``yxyx`` (Gemini's [ymin, xmin, ymax, xmax]).
    """

    time_unit: str | None = None
    box_scale: str | None = None
    index_base: int = 0
    box_order: str = "xyxy"

    @classmethod
    def coerce(cls, hint: CoordHint | str | dict | None) -> CoordHint:
        """Accept a ``CoordHint``, a dict of its fields, or a string like ``"frames+permille"``."""
        if hint is None:
            return cls()
        if isinstance(hint, CoordHint):
            return hint
        if isinstance(hint, dict):
            return cls(**hint)._checked()
        aliases = {"qwen2vl": "permille", "qwen2-vl": "permille", "per-mille": "permille", "seconds": "seconds",
                   "frame": "frames", "index": "frames", "fractions": "fraction", "normalized": "relative"}
        time_unit = box_scale = None
        index_base = 0
        box_order = "xyxy"
        for token in re.split(r"[+,\s]+", str(hint).strip().lower()):
            if not token:
                continue
            token = aliases.get(token, token)
            if token in BOX_ORDERS:
                box_order = token
            elif token in TIME_UNITS:
                time_unit = token
            elif token in BOX_SCALES:
                box_scale = token
            elif token in ("index_base=1", "one_based", "1-based"):
                index_base = 1
            else:
                raise ValueError(f"unknown coord_hint token {token!r}; use {TIME_UNITS}, {BOX_SCALES} or 'one_based'")
        return cls(time_unit, box_scale, index_base, box_order)

    def _checked(self) -> CoordHint:
        if self.time_unit not in (None, *TIME_UNITS):
            raise ValueError(f"coord_hint time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        if self.box_scale not in (None, *BOX_SCALES):
            raise ValueError(f"coord_hint box_scale must be one of {BOX_SCALES}, got {self.box_scale!r}")
        if self.box_order not in BOX_ORDERS:
            raise ValueError(f"coord_hint box_order must be one of {BOX_ORDERS}, got {self.box_order!r}")
        return self


@dataclass
class ParsedAnswer:
    """One answer read into project conventions.

    ``boxes`` are absolute-pixel xyxy of the original video keyed by 0-based frame; ``boxes_by_time``
    keeps the same boxes keyed by the second the model named (when it named one), for scorers that key
    by timestamp (V-STaR). ``points`` holds point answers (Molmo), which are not boxes. ``parse_failed``
    is set when nothing usable was found; ``reason`` says why, or which part is missing.
    """

    span_s: tuple[float, float] | None = None
    span_frames: tuple[int, int] | None = None
    boxes: dict[int, list[float]] = field(default_factory=dict)
    parse_failed: bool = False
    reason: str | None = None
    raw_text: str = ""
    boxes_by_time: dict[float, list[float]] = field(default_factory=dict)
    points: dict[int, tuple[float, float]] = field(default_factory=dict)
    time_unit: str | None = None
    box_scale: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def boxes_by_frame(self) -> dict[int, list[float]]:
        return self.boxes

    def to_prediction(self, qid: str) -> GroundingPrediction:
        extra: dict[str, Any] = {}
        if self.flags:
            extra["parse_flags"] = list(self.flags)
        if self.reason:
            extra["parse_reason"] = self.reason
        if self.points:
            extra["points"] = {str(k): list(v) for k, v in sorted(self.points.items())}
        return GroundingPrediction(
            qid=qid,
            span_frames=self.span_frames,
            span_s=self.span_s,
            boxes={k: list(v) for k, v in self.boxes.items()},
            raw_text=self.raw_text,
            parse_failed=self.parse_failed,
            span_source="text" if self.span_s is not None or self.span_frames is not None else None,
            extra=extra,
        )


@dataclass
class _RawBox:
    values: tuple[float, float, float, float]
    kind: str
    scale: str | None = None  # intrinsic scale of the format; None = decide from the numbers
    time_s: float | None = None
    index: int | None = None
    pos: int = 0


@dataclass
class _Context:
    duration_s: float
    fps: float
    num_frames: int
    width: float
    height: float
    processed_size: tuple[float, float] | None
    timestamps: list[float] | None
    indices: list[int] | None
    hint: CoordHint
    flags: list[str] = field(default_factory=list)
    time_unit: str | None = None
