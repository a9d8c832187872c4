"""Grounding prompts for off-the-shelf video LLMs, one style per model family.

Why the shape: the video block (frames, each labelled with its timestamp) comes **first** and the
question after it, so the video prefix is identical for every query on the same video and its KV
cache can be reused (``models.prompted``). The instruction names one answer format and one
coordinate system, and :meth:`PromptStyle.coord_hint` tells :func:`stvg_plugin.parsing.parse_answer`
how to read the numbers back. Frames are numbered from 1 in the prompt (``index_base=1``).

Templates are plain ``str.format`` strings so a config can override them (``PromptStyle.replace``).
The exact wording that works best per model is unconfirmed; these follow each family's documented
grounding conventions (Qwen2.5-VL: absolute pixels of its input; others: relative 0-1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from stvg_plugin.parsing import CoordHint

FAMILIES = ("qwen2_5_vl", "llava_onevision", "generic")
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

    def prefix(self, timestamps: Sequence[float]) -> str:
        """The video part of the prompt (same for every query on the video)."""
        frames = "".join(self.frame_line.format(k=k, t=float(t)) for k, t in enumerate(timestamps, start=1))
        return self.header + f"The video has {len(timestamps)} sampled frames:\n" + frames

    def suffix(self, query: str, duration_s: float, task: str = "stvg") -> str:
        """The question part: instruction for ``task`` (``stvg`` | ``tvg`` | ``rec``) and the turn end."""
        if task not in TASK_INSTRUCTIONS:
            raise ValueError(f"task must be one of {tuple(TASK_INSTRUCTIONS)}, got {task!r}")
        text = TASK_INSTRUCTIONS[task].format(query=query.strip(), duration=float(duration_s), coords=self.coords)
        return text + self.footer

    def coord_hint(self) -> CoordHint:
        return CoordHint(time_unit="seconds", box_scale=self.box_scale, index_base=1)

    def replace(self, **changes: str) -> PromptStyle:
        return dataclasses.replace(self, **changes)


_QWEN_CHAT_HEADER = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
_QWEN_CHAT_FOOTER = "<|im_end|>\n<|im_start|>assistant\n"
_RELATIVE = "x1, y1 is the top-left and x2, y2 the bottom-right corner, as fractions of the frame width and height (0 to 1)."

STYLES: dict[str, PromptStyle] = {
    # Qwen2.5-VL grounds in absolute pixels of its (smart-resized) input; frames go in as separate
    # images so each keeps its own timestamp (a video input would merge frame pairs).
    "qwen2_5_vl": PromptStyle(
        family="qwen2_5_vl",
        header=_QWEN_CHAT_HEADER,
        frame_line="Frame {k} at {t:.2f} s: <|vision_start|><|image_pad|><|vision_end|>\n",
        footer=_QWEN_CHAT_FOOTER,
        coords="x1, y1 is the top-left and x2, y2 the bottom-right corner, in pixels of the frame as you see it.",
        box_scale="pixels",
    ),
    # LLaVA-OneVision / LLaVA-Video use the Qwen2 chat markers and an <image> placeholder per frame.
    "llava_onevision": PromptStyle(
        family="llava_onevision",
        header=_QWEN_CHAT_HEADER,
        frame_line="Frame {k} at {t:.2f} s: <image>\n",
        footer=_QWEN_CHAT_FOOTER,
        coords=_RELATIVE,
        box_scale="relative",
    ),
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
    try:
        return STYLES[family]
    except KeyError:
        raise ValueError(f"unknown prompt family {family!r}; known: {FAMILIES}") from None
