"""Published STVG-MLLM answer formats as named recipes: the prompt that asks for the format, and the
parser settings that read it back (:func:`stvg_plugin.parsing.parse_answer` with the recipe's
:class:`~stvg_plugin.parsing.CoordHint`). One key picks one: ``recipe=<name>`` in a model config.

A recipe changes only the question and the coordinate system of a family's prompt style (chat markers
and frame placeholders stay the family's). The instructions are ours, written to elicit each paper's
documented output (notes/model.md §6); the fixtures in ``tests/test_recipes.py`` are those outputs.

* ``default``: our format ("Time: from a s to b s" + "Frame k: [x1, y1, x2, y2]"), the family's coordinates.
* ``open_o3_video``: Open-o3 Video (arXiv 2510.20579): span as ``<t>a</t>s to <t>b</t>s`` and
  ``<obj>name</obj><box>[x1, y1, x2, y2]</box>at<t>time</t>s`` evidence, absolute pixels of the input.
* ``videochat_r1``: VideoChat-R1 (arXiv 2504.06958): ``<answer>a to b</answer>`` and a list of
  normalised 0-1 boxes ``[[x0, y0, x1, y1], ...]``, one per listed frame in the span.
* ``stvg_o1``: STVG-R1 / STVG-o1 style (arXiv 2511.21375): ``Time range: a to b`` then per-frame
  ``k. [x1, y1, x2, y2]`` lines (k = listed frame number), absolute pixels of the input.
* ``vue_stg``: Vidi2's VUE-STG answers (arXiv 2511.19529; tubes on 1 s bins, normalised boxes): span as
  fractions of the duration ``a-b`` and one ``<t> s: [x1, y1, x2, y2]`` line per second, 0-1.
* ``gemini``: Gemini's documented box form ``[ymin, xmin, ymax, xmax]`` on 0-1000 (ai.google.dev,
  "Image understanding / object detection"); one ``<t> s: [ymin, xmin, ymax, xmax]`` line per second.
"""

from __future__ import annotations

from dataclasses import dataclass

from stvg_plugin.prompts import PERMILLE, RELATIVE, PromptStyle

_PIXELS = "x1, y1 is the top-left and x2, y2 the bottom-right corner, in pixels of the frame as you see it."


@dataclass(frozen=True)
class Recipe:
    """One published answer format: the STVG instruction asking for it and how to read it back."""

    name: str
    source: str
    stvg: str | None  # instruction template ({query}, {duration}, {coords}); None = the default one
    box_scale: str | None = None  # None = the family's own convention
    coords: str | None = None  # the coordinate sentence; None = the family's
    time_unit: str = "seconds"
    box_order: str = "xyxy"

    def apply(self, style: PromptStyle) -> PromptStyle:
        """``style`` asking for this recipe's format (chat markers and frame placeholders unchanged)."""
        changes: dict = {"time_unit": self.time_unit, "box_order": self.box_order}
        if self.stvg is not None:
            changes["instructions"] = (("stvg", self.stvg),)
        if self.box_scale is not None:
            changes["box_scale"] = self.box_scale
        if self.coords is not None:
            changes["coords"] = self.coords
        return style.replace(**changes)


RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", "stvg", None),
    "open_o3_video": Recipe(
        "open_o3_video",
        "Open-o3 Video (arXiv 2510.20579)",
        "Find when and where this happens: \"{query}\". The video lasts {duration:.2f} s.\n"
        "Answer inside <answer></answer>: first the time span as <t>start</t>s to <t>end</t>s, then for every "
        "listed frame inside that span the target as <obj>name</obj><box>[x1, y1, x2, y2]</box>at<t>time</t>s "
        "with the frame's time in seconds. {coords}",
    ),
    "videochat_r1": Recipe(
        "videochat_r1",
        "VideoChat-R1 (arXiv 2504.06958)",
        "Find when and where this happens: \"{query}\". The video lasts {duration:.2f} s.\n"
        "Think inside <think></think>, then answer inside <answer></answer> with the time span as "
        "\"<start> to <end>\" in seconds, followed by a list with one box per listed frame inside that span, "
        "in frame order: [[x0, y0, x1, y1], [x0, y0, x1, y1], ...]. {coords}",
        box_scale="relative",
        coords=RELATIVE,
    ),
    "stvg_o1": Recipe(
        "stvg_o1",
        "STVG-R1 / STVG-o1 (arXiv 2511.21375)",
        "Find when and where this happens: \"{query}\". The video lasts {duration:.2f} s.\n"
        "Answer inside <answer></answer> in exactly this format:\n"
        "Time range: <start> to <end>\n"
        "<k>. [x1, y1, x2, y2]\n"
        "with the times in seconds and one box line for every listed frame inside the span, <k> being the "
        "frame number given above. {coords}",
        coords=None,
    ),
    "vue_stg": Recipe(
        "vue_stg",
        "Vidi2 VUE-STG (arXiv 2511.19529)",
        "Find when and where this happens: \"{query}\". The video lasts {duration:.2f} s.\n"
        "Answer with the time span as two fractions of the video length, \"<start>-<end>\" (for example "
        "0.25-0.50), then one line per second inside the span as \"<t> s: [x1, y1, x2, y2]\". {coords}",
        box_scale="relative",
        coords=RELATIVE,
        time_unit="fraction",
    ),
    "gemini": Recipe(
        "gemini",
        "Gemini (ai.google.dev object detection: [ymin, xmin, ymax, xmax] on 0-1000)",
        "Find when and where this happens: \"{query}\". The video lasts {duration:.2f} s.\n"
        "Answer with the time span as \"from <start> s to <end> s\", then one line per second inside the span "
        "as \"<t> s: [ymin, xmin, ymax, xmax]\". {coords}",
        box_scale="permille",
        coords="ymin, xmin is the top-left and ymax, xmax the bottom-right corner, normalised to 0-1000 "
               "(0,0 is the top-left of the frame, 1000,1000 its bottom-right).",
        box_order="yxyx",
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a clear error lists the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}") from None


__all__ = ["PERMILLE", "RECIPES", "Recipe", "get_recipe"]
