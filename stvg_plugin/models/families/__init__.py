"""Model families of the prompted backend: everything specific to one family lives in its module.

A family (``qwen2_5_vl.py``, ``qwen3_vl.py``, ``internvl.py``, ``llava_onevision.py``) declares one
:class:`FamilySpec`: the transformers class and the ``model_type`` values it accepts, its processor
class, the prompt style (chat markers, per-frame placeholder, coordinate instruction), how frames
and timestamps are given, the coordinate convention of its answers (with where it is documented),
and a builder of a tiny random checkpoint for tests. Adding a family = adding one module here and
its name to :data:`FAMILY_MODULES` (or, outside the package, any module that calls
:func:`register_family`), plus ``conf/model/prompted_<name>_tiny.yaml`` (docs/EXTENDING.md).

Frames always go in as separate images, each labelled with its timestamp in the text ("Frame k at
t s: <image>"): every family then sees the same frames with their times, and transformers' video
processors (which need torchvision, absent here) are never used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvg_plugin.data import StvgError
from stvg_plugin.prompts import PromptStyle
from stvg_plugin.util.registry import Registry

FAMILY_MODULES = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision")


@dataclass(frozen=True)
class FamilySpec:
    """One model family of the prompted backend (see the module docstring)."""

    name: str
    model_types: tuple[str, ...]
    model_class: str  # attribute of ``transformers``
    processor_class: str  # attribute of ``transformers``; built from tokenizer + image processor only
    style: PromptStyle
    box_scale: str  # coordinate convention of answers: pixels | permille | relative
    coords_source: str  # where the convention is documented
    frames: str  # how frames and timestamps are given to the model
    build_tiny: Callable[[str | Path, int], Path]
    #: ``model.model`` attributes that a cached prefix must restore before it is extended (Qwen mRoPE)
    prefix_state: tuple[str, ...] = ()
    #: (height, width) of the frame the model's pixel answers refer to, from the processor outputs
    processed_size: Callable[[dict, Any], tuple[int, int] | None] | None = None
    #: (height, width, **options) -> the frame size a stock pipeline of this family resizes to
    answer_frame_size: Callable[..., tuple[int, int]] | None = None
    processor_kwargs: Callable[[Any], dict] | None = None  # extra processor arguments from the model config
    #: max_pixels -> image-processor ``size`` argument (families whose inputs are resized to a pixel budget)
    pixel_budget: Callable[[int], dict] | None = None
    #: processor arguments for video frames given as images (e.g. InternVL: one tile per frame, as its video path)
    frame_kwargs: dict[str, Any] = field(default_factory=dict)

    def model_cls(self):
        import transformers

        return getattr(transformers, self.model_class)

    def make_processor(self, tokenizer: Any, image_processor: Any, model_config: Any = None) -> Any:
        """The family's own transformers processor, without its video processor (frames go in as images)."""
        import transformers

        cls = _image_only(getattr(transformers, self.processor_class))
        kwargs = self.processor_kwargs(model_config) if (self.processor_kwargs and model_config is not None) else {}
        chat_template = getattr(tokenizer, "chat_template", None)
        return cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)


_IMAGE_ONLY: dict[type, type] = {}


def _image_only(cls: type) -> type:
    """``cls`` accepting ``video_processor=None``: transformers 5.24 checks the class of every sub-processor,
    and the video-processor base class cannot be resolved without torchvision."""
    if cls not in _IMAGE_ONLY:

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None and argument_name == "video_processor":
                return None
            return cls.check_argument_for_proper_class(self, argument_name, argument)

        _IMAGE_ONLY[cls] = type(f"{cls.__name__}ImagesOnly", (cls,),
                                {"check_argument_for_proper_class": check_argument_for_proper_class})
    return _IMAGE_ONLY[cls]


_FAMILIES: Registry[FamilySpec] = Registry(  # a built-in family's module is named after it
    "model family", StvgError, tuple(f"{__name__}.{name}" for name in FAMILY_MODULES),
    origin=lambda spec: f"{__name__}.{spec.name}",
)
register_family = _FAMILIES.register  # also from a module outside this package (docs/EXTENDING.md)
unregister_family = _FAMILIES.unregister
family_names = _FAMILIES.names


def get_family(name: str) -> FamilySpec:
    """The family called ``name``; a clear error lists the known ones."""
    spec = _FAMILIES.lookup(name)
    if spec is None:
        raise StvgError(f"unknown model family {name!r}; known: {sorted(family_names())}")
    return spec


#: model types of remote-code releases of supported families, and what to load instead
REMOTE_CODE_FORMATS = {
    "internvl_chat": "InternVL's remote-code format; use its transformers-native '-hf' release (model_type internvl)",
    "llava_qwen": "the original LLaVA-Video / LLaVA-OneVision format; use the 'llava-hf' conversion "
                  "(model_type llava_onevision)",
}


def family_for_model_type(model_type: str, path: Any = None) -> FamilySpec:
    """The family that accepts a checkpoint's ``config.model_type``."""
    specs = _FAMILIES.specs()
    for spec in specs:
        if model_type in spec.model_types:
            return spec
    accepted = sorted(t for s in specs for t in s.model_types)
    where = f"{path}: " if path is not None else ""
    hint = f" ({REMOTE_CODE_FORMATS[model_type]})" if model_type in REMOTE_CODE_FORMATS else ""
    raise StvgError(f"{where}model_type {model_type!r} is not supported by the prompted backend{hint} "
                    f"(supported: {accepted})")
