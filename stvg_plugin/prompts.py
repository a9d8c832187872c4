"""Every prompt template of the project, in one place: the prompted backends' styles, the model core's
defaults and the stock lmms-eval prompt.

* Prompted backends (off-the-shelf video LLMs, one :class:`PromptStyle` per model family). Why the
  shape: the video block (frames, each labelled with its timestamp) comes **first** and the question
  after it, so the video prefix is identical for every query on the same video and its KV cache can be
  reused (``models.prompted``). The instruction names one answer format and one coordinate system, and
  :meth:`PromptStyle.coord_hint` tells :func:`stvg_plugin.parsing.parse_answer` how to read the numbers
  back. Templates are plain ``str.format`` strings so a config can override them
  (``PromptStyle.replace``). The exact wording that works best per model is unconfirmed; these follow
  each family's documented grounding conventions (Qwen2.5-VL: absolute pixels of its input; Qwen3-VL
  and InternVL: relative 0-1000; LLaVA-OneVision: relative 0-1), each stated and cited in its
  ``models/families`` module, where each family's own chat and image markers also live.
* The model core (SpaceVLLM): the defaults of the template fields of
  :class:`~stvg_plugin.models.configuration_spacevllm.SpaceVLLMConfig` (``CORE_*``); a checkpoint saves
  its templates in its ``config.json``, so changing a default here changes only new models.
* Stock lmms-eval models (``lmms_tasks``): ``STOCK_*``, asked for one box per second.

Frame numbering differs on purpose and is a parameter of :func:`frame_lines`, the one function that
writes the per-frame lines: the model core numbers frames from 0 (:data:`CORE_INDEX_BASE`; its
checkpoints were trained on "Frame 0 at 0.00 s:" and its box answers key frames from 0), the prompted
backends from 1 (:data:`PROMPTED_INDEX_BASE`; "Frame 1 at 0.50 s", and the parser reads frame numbers
back with the same base). Neither may change: saved checkpoints and published recipes depend on the
exact text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stvg_plugin.parsing import CoordHint

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision", "generic")

#: first frame number of the model core's prompts ("Frame 0 at ...") and box answers ("frame 0: [...]")
CORE_INDEX_BASE = 0
#: first frame number of the prompted backends' prompts ("Frame 1 at ...") and of the answers they parse
PROMPTED_INDEX_BASE = 1
#: the label before each frame of a prompted backend (a family's ``frame_line`` adds its image marker)
FRAME_LABEL = "Frame {k} at {t:.2f} s: "


def frame_lines(template: str, timestamps: Sequence[float], *, index_base: int) -> list[str]:
    """``template`` formatted once per frame, in order: the text written before (or around) each frame.

    The frame's number is its position plus ``index_base`` (:data:`CORE_INDEX_BASE` = 0 for the model
    core, :data:`PROMPTED_INDEX_BASE` = 1 for the prompted backends; see the module docstring for why
    both exist) and is given as ``{k}`` and ``{index}``; its time in seconds as ``{t}`` and ``{time}``
    (a float). ``index_base`` has no default so that every caller states its convention.
    """
    return [template.format(k=number, index=number, t=float(t), time=float(t))
            for number, t in enumerate(timestamps, start=index_base)]


# --------------------------------------------------------------------------- prompted backends

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
        frames = "".join(frame_lines(self.frame_line, timestamps, index_base=PROMPTED_INDEX_BASE))
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
        labels = frame_lines(FRAME_LABEL, timestamps, index_base=PROMPTED_INDEX_BASE)
        for label, image in zip(labels, images):
            content += [{"type": "text", "text": label}, image, {"type": "text", "text": "\n"}]
        content.append({"type": "text", "text": question})
        return [{"role": "user", "content": content}]

    def coord_hint(self) -> CoordHint:
        return CoordHint(time_unit=self.time_unit, box_scale=self.box_scale, index_base=PROMPTED_INDEX_BASE,
                          box_order=self.box_order)

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
        frame_line=FRAME_LABEL + "<image>\n",
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


# --------------------------------------------------------------------------- the model core (SpaceVLLM)

# ChatML turns (the chat format of the Qwen2 LLM inside both core backbones)
CHATML_SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
CHATML_USER_TURN = "<|im_start|>user\n"
CHATML_ASSISTANT_TURN = "<|im_end|>\n<|im_start|>assistant\n"

#: text before the first frame (tiny presets; the 7B presets add the system turn: ``CORE_PROMPT_PREFIX_7B``)
CORE_PROMPT_PREFIX = CHATML_USER_TURN
CORE_PROMPT_PREFIX_7B = CHATML_SYSTEM_TURN + CHATML_USER_TURN
#: text before each frame's visual tokens (``{index}`` from :data:`CORE_INDEX_BASE`, ``{time}`` seconds)
CORE_FRAME_TEMPLATE = "Frame {index} at {time:.2f} s:"
#: text after each frame's visual tokens and its query token
CORE_FRAME_SUFFIX = "\n"
#: the short frame header of the CPU learning preset (``spacevllm_tiny_learn``, no suffix): "3:0.4" is 5
#: tokens where the default is 14 with its newline, so the tiny model's sequence drops from ~560 to ~410
#: tokens; its frame number stays, for the text-box ablation's "frame {index}: [...]" answers
CORE_FRAME_TEMPLATE_COMPACT = "{index}:{time:.1f}"
#: the question after the video; must contain ``{query}`` (its tokens are located exactly)
CORE_INSTRUCTION_TEMPLATE = "Find {query}. When is it visible?" + CHATML_ASSISTANT_TURN
#: one box of a text answer (``box_head="text"``): normalised 0-1 xyxy of sampled frame ``{index}``
CORE_BOX_TEXT_TEMPLATE = "frame {index}: [{x1:.2f}, {y1:.2f}, {x2:.2f}, {y2:.2f}]"


def core_frame_templates(backbone: str) -> dict[str, str]:
    """``frame_template`` / ``frame_suffix`` of the model core for a backbone.

    Qwen2.5-VL's visual tokens go between its vision start/end markers, as its own chat template puts an
    image (the markers are the family's: ``models.families.qwen2_5_vl``); other backbones take the
    defaults.
    """
    if backbone == "qwen2_5_vl":
        from stvg_plugin.models.families.qwen2_5_vl import VISION_END, VISION_START

        return {"frame_template": f"{CORE_FRAME_TEMPLATE} {VISION_START}", "frame_suffix": VISION_END + "\n"}
    return {"frame_template": CORE_FRAME_TEMPLATE, "frame_suffix": CORE_FRAME_SUFFIX}


# --------------------------------------------------------------------------- stock lmms-eval models

# The coordinate system a stock model is asked to answer in (``lmms_tasks.common.doc_to_text``):
# ``box_scale`` is one of these keys.
STOCK_BOX_SCALE_TEXT = {
    "pixels": "in pixels of the {width}x{height} frame",
    "permille": "as coordinates relative to the frame on a 0 to 1000 scale (0,0 is the top-left corner, "
                "1000,1000 the bottom-right)",
    "relative": "as fractions of the frame width and height, from 0 to 1",
}
STOCK_STVG_PROMPT = (
    'The video is {duration:.1f} seconds long and {width}x{height} pixels. Find: "{query}". '
    'Answer with the time span as "from <start> s to <end> s", then one bounding box per second '
    'of that span as "<t> s: [x1, y1, x2, y2]" {coords}.'
)
STOCK_TVG_PROMPT = (
    'The video is {duration:.1f} seconds long. When does this happen: "{query}"? '
    'Answer only with the time span as "from <start> s to <end> s".'
)


def stock_question(task_type: str, *, query: str, duration_s: float, width: int, height: int, box_scale: str) -> str:
    """The question a stock lmms-eval model gets: ``tvg`` asks for a span, any other task for a span and
    one box per second in ``box_scale`` (a key of :data:`STOCK_BOX_SCALE_TEXT`; the caller validates it)."""
    coords = STOCK_BOX_SCALE_TEXT[box_scale].format(width=width, height=height)
    template = STOCK_TVG_PROMPT if task_type == "tvg" else STOCK_STVG_PROMPT
    return template.format(duration=duration_s, width=width, height=height, query=query, coords=coords)
