"""Grounding prompts for off-the-shelf video LLMs, one style per model family.

Why the shape: the video block (frames, each labelled with its timestamp) comes **first** and the
question after it, so the video prefix is identical for every query on the same video and its KV
cache can be reused (``models.prompted``). The instruction names one answer format and one
coordinate system, and :meth:`PromptStyle.coord_hint` tells :func:`stvg_plugin.parsing.parse_answer`
how to read the numbers back. Frames are numbered from 1 in the prompt (``index_base=1``).

Templates are plain ``str.format`` strings so a config can override them (``PromptStyle.replace``).
The exact wording that works best per model is unconfirmed; these follow each family's documented
grounding conventions (Qwen2.5-VL: absolute pixels of its input; Qwen3-VL and InternVL: relative
0-1000; LLaVA-OneVision: relative 0-1), each stated and cited in its ``models/families`` module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stvg_plugin.parsing import CoordHint

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision", "generic")
TASK_INSTRUCTIONS = {
    "stvg": (
        "Find when and where this happens: \"{query}\".\n"
        "Answer in exactly this format, with nothing else:\n"
        "Time: from <start> s to <end> s\n"
        "Frame <k>: [x1, y1, x2, y2]\n"
        "Write the time span in seconds (the video lasts {duration:.2f} s). Then write one box line for every "
        "listed frame whose time is inside that span, using the frame numbers given above. {coords}"
    ),
    "tvg": (
        "When does this happen: \"{query}\"?\n"
        "Answer in exactly this format, with nothing else:\n"
        "Time: from <start> s to <end> s\n"
        "Use seconds; the video lasts {duration:.2f} s."
    ),
    "rec": (
        "Find this object: \"{query}\".\n"
        "Answer with one box line for every listed frame, in exactly this format, with nothing else:\n"
        "Frame <k>: [x1, y1, x2, y2]\n"
        "{coords}"
    ),
}


@dataclass(frozen=True)
class PromptStyle:
    """Chat markers, per-frame placeholder and coordinate system of one model family."""

    family: str
    header: str
    frame_line: str
    footer: str
    coords: str
    box_scale: str
    #: a recipe's own instruction per task (``stvg_plugin.recipes``), else :data:`TASK_INSTRUCTIONS`
    instructions: tuple[tuple[str, str], ...] = ()
    time_unit: str = "seconds"
    box_order: str = "xyxy"

    def prefix(self, timestamps: Sequence[float]) -> str:
        """The video part of the prompt (same for every query on the video)."""
        frames = "".join(self.frame_line.format(k=k, t=float(t)) for k, t in enumerate(timestamps, start=1))
        return self.header + f"The video has {len(timestamps)} sampled frames:\n" + frames

    def question(self, query: str, duration_s: float, task: str = "stvg") -> str:
        """The instruction for ``task`` (``stvg`` | ``tvg`` | ``rec``), without chat markers."""
        if task not in TASK_INSTRUCTIONS:
            raise ValueError(f"task must be one of {tuple(TASK_INSTRUCTIONS)}, got {task!r}")
        template = dict(self.instructions).get(task, TASK_INSTRUCTIONS[task])
        return template.format(query=query.strip(), duration=float(duration_s), coords=self.coords)

    def suffix(self, query: str, duration_s: float, task: str = "stvg") -> str:
        """The question part: instruction for ``task`` and the turn end."""
        return self.question(query, duration_s, task) + self.footer

    def messages(self, timestamps: Sequence[float], images: Sequence[dict], question: str) -> list[dict]:
        """The same request as OpenAI-style chat messages (``images``: one content item per frame), for a
        server that applies its own chat template: the text equals :meth:`prefix` + :meth:`suffix` without
        this style's chat markers and image placeholders."""
        content: list[dict] = [{"type": "text", "text": f"The video has {len(timestamps)} sampled frames:\n"}]
        for k, (t, image) in enumerate(zip(timestamps, images), start=1):
            content += [{"type": "text", "text": f"Frame {k} at {float(t):.2f} s: "}, image, {"type": "text", "text": "\n"}]
        content.append({"type": "text", "text": question})
        return [{"role": "user", "content": content}]

    def coord_hint(self) -> CoordHint:
        return CoordHint(time_unit=self.time_unit, box_scale=self.box_scale, index_base=1, box_order=self.box_order)

    def replace(self, **changes: Any) -> PromptStyle:
        return dataclasses.replace(self, **changes)


_RELATIVE = "x1, y1 is the top-left and x2, y2 the bottom-right corner, as fractions of the frame width and height (0 to 1)."
RELATIVE = _RELATIVE
PERMILLE = ("x1, y1 is the top-left and x2, y2 the bottom-right corner, as coordinates relative to the frame on a "
            "0 to 1000 scale (0,0 is the top-left of the frame, 1000,1000 its bottom-right).")

# Family styles live with their family (``stvg_plugin.models.families.<name>``); this one serves any
# other model whose frames are ``<image>`` placeholders.
STYLES: dict[str, PromptStyle] = {
    "generic": PromptStyle(
        family="generic",
        header="USER: ",
        frame_line="Frame {k} at {t:.2f} s: <image>\n",
        footer="\nASSISTANT: ",
        coords=_RELATIVE,
        box_scale="relative",
    ),
}


def get_style(family: str) -> PromptStyle:
    """The prompt style of a family; a clear error names the known ones."""
    if family in STYLES:
        return STYLES[family]
    from stvg_plugin.models.families import family_names, get_family

    if family in family_names():  # every registered family, also one added after import
        return get_family(family).style
    raise ValueError(f"unknown prompt family {family!r}; known: {(*family_names(), *STYLES)}")


def resolve_style(style: PromptStyle | str | dict | None, family: str) -> PromptStyle:
    """A configured ``style`` as a :class:`PromptStyle`: a style, a family name, or a dict of fields that
    override the family's style (e.g. ``{"coords": "..."}`` from a YAML config); ``None`` -> the family's."""
    if style is None:
        return get_style(family)
    if isinstance(style, PromptStyle):
        return style
    if isinstance(style, str):
        return get_style(style)
    if isinstance(style, dict) or hasattr(style, "items"):
        fields = {f.name for f in dataclasses.fields(PromptStyle)}
        unknown = sorted(set(style) - fields)
        if unknown:
            raise ValueError(f"style: unknown field(s) {unknown}; known: {sorted(fields)}")
        return get_style(family).replace(**{str(k): v for k, v in style.items()})
    raise ValueError(f"style must be a family name or a mapping of PromptStyle fields, got {type(style).__name__}")
