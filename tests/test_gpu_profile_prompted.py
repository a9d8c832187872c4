"""bench/gpu_profile.py on the prompted Qwen2.5-VL 7B preset (issue 13.9): real width, 1 layer, 2 frames, CPU.

The profile builds Qwen2.5-VL at the backbone adapter's 7B dimensions with random weights, wraps it in
``PromptedGrounder`` and times its encode-once prefix and one cached answer. This checks that every row the
SpaceVLLM presets print is there and finite, that the frames went in at the preset's ``max_pixels``
(Qwen's smart resize), and that the counted prefill FLOPs are those of a real-width model.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PRESET = "prompted_qwen2_5_vl_7b"


def _gpu_profile():
    spec = importlib.util.spec_from_file_location("gpu_profile", REPO / "bench" / "gpu_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prompted_preset_is_recognised_and_spacevllm_presets_are_not() -> None:
    gp = _gpu_profile()
    cfg = gp.prompted_preset(PRESET)
    assert cfg is not None and cfg["family"] == "qwen2_5_vl" and cfg["max_pixels"]
    assert gp.prompted_preset("spacevllm_7b") is None
    assert gp.prompted_preset("prompted_qwen2_5_vl_tiny") is None  # only real-size prompted presets
    assert gp.prompted_preset("../conf/model/prompted_qwen2_5_vl_7b") is None  # names only, no paths


@pytest.mark.slow  # ~35 s on one CPU thread, ~1.9 GB peak RSS
def test_prompted_7b_profile_prints_every_row_at_real_width() -> None:
    from stvg_plugin.models.backbones import Qwen25VLAdapter
    from stvg_plugin.models.families.qwen2_5_vl import answer_frame_size

    gp = _gpu_profile()
    max_pixels = yaml.safe_load((REPO / "conf/model" / f"{PRESET}.yaml").read_text())["max_pixels"]
    row = gp.profile(PRESET, "cpu", num_frames=2, queries=1, peak_tflops=989.0, dtype="float32", num_layers=1,
                     max_new_tokens=4)

    for key in ("prefill_s", "per_query_s_median", "answer_tokens_per_s", "prefill_flops", "prefill_mfu",
                "peak_rss_gib"):
        assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, (key, row[key])
    assert len(row["answer_tokens"]) == 1 and 1 <= row["answer_tokens"][0] <= 4  # model tokens, capped
    assert row["preset"] == PRESET and row["num_layers"] == 1 and row["max_pixels"] == max_pixels
    # frames at the preset's pixel budget through Qwen's own smart resize (aspect kept, multiples of 28)
    h, w = answer_frame_size(*row["frame_hw"], max_pixels=max_pixels, min_pixels=56 * 56)
    assert row["processed_hw"] == [h, w] and h * w <= max_pixels
    assert row["visual_tokens_per_frame"] == (h // 28) * (w // 28)
    assert row["prefix_tokens"] > 2 * row["visual_tokens_per_frame"]
    # a real-width LLM layer: the prefill costs at least 2 FLOPs per weight of one decoder layer per token
    text = Qwen25VLAdapter.large_config().get_text_config()
    d, kv = text.hidden_size, text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
    layer_weights = 2 * d * d + 2 * d * kv + 3 * d * text.intermediate_size
    assert row["prefill_flops"] >= 2 * row["prefix_tokens"] * layer_weights
    assert row["prefill_mfu"] == pytest.approx(row["prefill_flops"] / row["prefill_s"] / 989e12)
