"""Every prompted model family on its tiny random checkpoint: loading, equivalence with transformers' own
generate through the family's processor and chat template, encode-once, ``stvg predict`` presets, config keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stvg_plugin.cli import main
from stvg_plugin.data import GroundingQuery, StvgError, read_queries
from stvg_plugin.models.families import family_names, get_family
from stvg_plugin.models.prompted import PromptedGrounder, build_tiny_prompted
from stvg_plugin.prompts import PromptStyle
from stvg_plugin.video import sample_video

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision")
GEN = {"num_frames": 3, "max_new_tokens": 12, "num_workers": 0}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f: build_tiny_prompted(root / f, seed=0, family=f) for f in FAMILIES}


@pytest.fixture(scope="module")
def queries(synth_dir: Path) -> list[GroundingQuery]:
    return read_queries(synth_dir / "annotations.jsonl")


def test_registry_lists_the_four_families():
    assert set(FAMILIES) <= set(family_names())
    for name in FAMILIES:
        spec = get_family(name)
        assert spec.box_scale in ("pixels", "permille", "relative") and spec.coords_source
        assert spec.style.box_scale == spec.box_scale


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_is_native_and_loads_without_remote_code(family: str, ckpts: dict[str, Path]):
    config = json.loads((ckpts[family] / "config.json").read_text())
    assert config["model_type"] in get_family(family).model_types and "auto_map" not in config
    assert (ckpts[family] / "model.safetensors").is_file()
    grounder = PromptedGrounder.from_pretrained(ckpts[family], **GEN)
    assert grounder.family == family and isinstance(grounder.style, PromptStyle)
    assert type(grounder.model).__name__ == get_family(family).model_class


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_saves_the_in_process_generation_defaults(family: str, ckpts: dict[str, Path]):
    """A server reads only generation_config.json (`transformers serve`, vLLM): the tiny checkpoint saves there
    the end markers and suppressed vision placeholders that the in-process backend passes to generate(), so a
    served random model decodes as the in-process one (tests/test_served_transformers_serve.py)."""
    from transformers import GenerationConfig

    saved = GenerationConfig.from_pretrained(ckpts[family], local_files_only=True)
    grounder = PromptedGrounder.from_pretrained(ckpts[family], **GEN)
    assert grounder._end_ids and grounder._suppress_ids
    assert list(saved.eos_token_id) == grounder._end_ids and list(saved.suppress_tokens) == grounder._suppress_ids


@pytest.mark.parametrize("family", ("qwen2_5_vl", "qwen3_vl"))
def test_qwen_tiny_templates_render_a_video_item_as_the_released_ones(family: str, ckpts: dict[str, Path]):
    """lmms-eval's stock Qwen models send the video whole: one video placeholder for the processor to expand."""
    from stvg_plugin.models.families.qwen2_5_vl import QWEN_VIDEO

    grounder = PromptedGrounder.from_pretrained(ckpts[family], **GEN)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "where?"}]}]
    text = grounder.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.count(QWEN_VIDEO) == 1 and text.index(QWEN_VIDEO) < text.index("where?")


def _messages(style: PromptStyle, timestamps: list[float], query: str, duration: float) -> list[dict]:
    """The same request as chat messages: text items and one image item per frame, in order."""
    content: list[dict] = [{"type": "text", "text": f"The video has {len(timestamps)} sampled frames:\n"}]
    for k, t in enumerate(timestamps, start=1):
        content += [{"type": "text", "text": f"Frame {k} at {t:.2f} s: "}, {"type": "image"}, {"type": "text", "text": "\n"}]
    question = style.suffix(query, duration)
    assert question.endswith(style.footer)
    content.append({"type": "text", "text": question[: len(question) - len(style.footer)]})
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_text_equals_transformers_generate(family: str, ckpts: dict[str, Path], queries: list[GroundingQuery]):
    grounder = PromptedGrounder.from_pretrained(ckpts[family], **GEN)
    sampled = sample_video(queries[0].video, num_frames=3)
    texts = ["the red circle", "a square moving left"]
    ours = [p.raw_text for p in grounder.ground(sampled, texts)]

    # reference: the family's processor + chat template, the full prompt in one generate call
    timestamps = [float(t) for t in sampled.timestamps]
    for text, answer in zip(texts, ours):
        messages = _messages(grounder.style, timestamps, text, sampled.info.duration_s)
        prompt = grounder.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert prompt == grounder.style.prefix(timestamps) + grounder.style.suffix(text, sampled.info.duration_s)
        # the family's documented per-frame processor options (InternVL: one tile per frame, as its video path)
        inputs = grounder.processor(text=[prompt], images=list(sampled.frames), return_tensors="pt",
                                    **get_family(family).frame_kwargs)
        with torch.inference_mode():
            out = grounder.model.generate(**inputs, max_new_tokens=GEN["max_new_tokens"], do_sample=False,
                                          eos_token_id=grounder._end_ids, pad_token_id=grounder._end_ids[-1],
                                          suppress_tokens=grounder._suppress_ids)
        reference = grounder.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
        for marker in ("<|im_end|>", "<|endoftext|>"):
            reference = reference.replace(marker, "")
        assert answer == reference.strip() and answer  # random but non-empty text, identical token for token


@pytest.mark.parametrize("family", FAMILIES)
def test_video_encoded_once_per_video(family: str, ckpts: dict[str, Path], queries: list[GroundingQuery]):
    grounder = PromptedGrounder.from_pretrained(ckpts[family], **GEN)
    calls = [0]
    vision = grounder.model.model.visual if hasattr(grounder.model.model, "visual") else grounder.model.model.vision_tower
    vision.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    preds = grounder.ground(sample_video(queries[0].video, num_frames=3), ["a", "b", "c"])
    assert calls[0] == 1 and len(preds) == 3
    assert all(p.extra["backend"] == f"prompted:{family}" for p in preds)


@pytest.mark.parametrize("family", FAMILIES)
def test_stvg_predict_tiny_preset_runs_with_nothing_downloaded(family: str, synth_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    code = main(["predict", f"model=prompted_{family}_tiny", f"annotations={synth_dir / 'annotations.jsonl'}",
                 f"output_dir={out}", "model.num_frames=2", "model.max_new_tokens=8"])
    assert code == 0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    expected = [q.qid for q in read_queries(synth_dir / "annotations.jsonl")]
    assert [p["qid"] for p in preds] == expected
    assert all("error" not in p and p["extra"]["backend"] == f"prompted:{family}" for p in preds)


def test_configured_style_reaches_the_backend_as_a_prompt_style(ckpts: dict[str, Path]):
    from stvg_plugin.models import load_grounder

    spec = {"type": "prompted", "family": "qwen2_5_vl", "path": str(ckpts["qwen2_5_vl"]), "num_frames": 2,
            "style": {"coords": "Boxes in pixels, please."}}
    grounder = load_grounder(spec)
    assert isinstance(grounder.style, PromptStyle) and grounder.style.coords == "Boxes in pixels, please."
    assert grounder.style.header == get_family("qwen2_5_vl").style.header
    grounder = load_grounder({**spec, "style": "qwen2_5_vl"})
    assert grounder.style == get_family("qwen2_5_vl").style
    with pytest.raises(ValueError, match="unknown field"):
        load_grounder({**spec, "style": {"colour": "red"}})


def test_configured_family_is_checked_against_the_checkpoint(ckpts: dict[str, Path]):
    from stvg_plugin.models import load_grounder

    with pytest.raises(StvgError, match="family 'qwen3_vl' was configured"):
        load_grounder({"type": "prompted", "family": "qwen3_vl", "path": str(ckpts["qwen2_5_vl"])})


def test_shipped_7b_config_sets_family_and_pixel_budget():
    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "conf/model/prompted_qwen2_5_vl_7b.yaml").read_text())
    assert cfg["family"] == "qwen2_5_vl" and 0 < cfg["max_pixels"] <= 1003520


def test_generic_prompted_config_takes_the_family_from_the_checkpoint(ckpts: dict[str, Path], synth_dir: Path,
                                                                       tmp_path: Path):
    out = tmp_path / "out"
    ann = tmp_path / "ann.jsonl"
    ann.write_text((synth_dir / "annotations.jsonl").read_text().splitlines()[0] + "\n")
    code = main(["predict", "model=prompted", f"checkpoint={ckpts['internvl']}", f"annotations={ann}",
                 f"video_root={synth_dir}", f"output_dir={out}", "model.num_frames=2", "model.max_new_tokens=8",
                 "model.dtype=float32", "model.recipe=gemini"])
    assert code == 0
    pred = json.loads((out / "predictions.jsonl").read_text())
    assert pred["extra"]["backend"] == "prompted:internvl" and "error" not in pred


def test_internvl_frames_are_one_tile_each(ckpts: dict[str, Path], queries: list[GroundingQuery]):
    """The tiny checkpoint tiles images (as the released configs do); frames must still be one tile each."""
    grounder = PromptedGrounder.from_pretrained(ckpts["internvl"], **GEN)
    prefix = grounder._encode_video(sample_video(queries[0].video, num_frames=3))
    assert prefix.inputs["pixel_values"].shape[0] == 3


@pytest.mark.parametrize(("model_type", "hint"), [("internvl_chat", "'-hf' release"), ("llava_qwen", "llava-hf")])
def test_remote_code_formats_are_refused_with_what_to_load_instead(tmp_path: Path, model_type: str, hint: str):
    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(StvgError, match=f"model_type '{model_type}' is not supported.*{hint}"):
        PromptedGrounder.from_pretrained(folder)
