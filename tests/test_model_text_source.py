"""``decoder_text_source="hidden+embedding"``: the space decoder also reads the query tokens' input embeddings.

Why it exists (examples/learnability.md, session 5): a from-scratch LLM's last-layer states at the query
tokens mix in the video they attend to, so a colour word moved what reached the decoder less than another
video did. These tests pin the wiring: the decoder's output depends on the words through the new path with
the LLM states held fixed, the batched training forward (padded query texts) equals the per-example one,
inference and training feed the decoder the same inputs, and the option survives save/load.
"""

from __future__ import annotations

import pytest
import torch
from close import ROUNDING_ULPS, assert_tensors_close

from stvg_plugin.data import read_queries
from stvg_plugin.models import build_tiny_model
from stvg_plugin.models.modeling_spacevllm import SpaceVLLMForGrounding
from stvg_plugin.models.space_decoder import QueryGuidedSpaceDecoder
from stvg_plugin.training.dataset import TrainData, expand_tasks
from stvg_plugin.video import sample_video

LEARN = {"num_frames": 4, "max_frames": 16, "frame_size": [64, 64], "span_source": "relevance", "decoder_dim": 32,
         "decoder_visual_source": "patches", "decoder_temporal": True, "decoder_text_match": True,
         "decoder_text_source": "hidden+embedding"}


def test_decoder_reads_the_text_embeddings_beside_the_states():
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(16, 16, 2, text_match=True, text_embeddings=True)
    dec._init_reference_head()
    with torch.no_grad():  # the text-match term starts at zero; give it weights so scores depend on it
        dec.text_key.weight.normal_()
    visual, queries, text = torch.randn(1, 3, 4, 16), torch.randn(1, 3, 16), torch.randn(1, 5, 16)
    red, blue = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    a = dec(visual, queries, text, text_embeds=red)
    b = dec(visual, queries, text, text_embeds=blue)
    assert not torch.allclose(a.token_logits, b.token_logits)  # same LLM states, other words: other scores
    with pytest.raises(ValueError, match="text_embeds"):
        dec(visual, queries, text)
    plain = QueryGuidedSpaceDecoder(16, 16, 2)
    assert plain.text_embed_proj is None
    assert not any("text_embed_proj" in k for k in plain.state_dict())  # old checkpoints keep their keys


def test_training_and_inference_feed_the_decoder_the_query_embeddings(synth_dir, tmp_path, monkeypatch):
    model = build_tiny_model({"preset": "spacevllm_tiny", **LEARN}).eval()
    assert model.config.decoder_text_source == "hidden+embedding"
    q = read_queries(synth_dir / "annotations.jsonl")[0]
    sampled = sample_video(q.video, num_frames=4, size=(64, 64))
    seen = []
    forward = model.space_decoder.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("text_embeds"))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.space_decoder, "forward", spy)
    with torch.no_grad():
        model([model.prepare_inputs(sampled, q.query)])
        answers = model.answer_queries(model.encode_video(sampled), [q.query])
        ins = model.processor.instruction(q.query)
        expected = model.backbone.embed_text(ins.input_ids[ins.query_mask][None])
    assert answers.boxes.shape[0] == 1 and len(seen) == 2
    for got in seen:  # training and inference: the query tokens' own input embeddings, nothing else
        assert_tensors_close(got, expected, ulps=0)

    model.save_pretrained(tmp_path / "ckpt")
    loaded = SpaceVLLMForGrounding.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.decoder_text_source == "hidden+embedding"
    assert set(loaded.state_dict()) == set(model.state_dict())
    assert any("text_embed_proj" in k for k in loaded.state_dict())


def test_batched_forward_pads_the_text_embeddings_like_the_states(synth_dir):
    model = build_tiny_model({"preset": "spacevllm_tiny", **LEARN})
    samples = expand_tasks(read_queries(synth_dir / "annotations.jsonl"), [])
    data = TrainData(model, samples, {"stvg": 1.0}, seed=3, num_workers=1)
    examples = [ex.inputs for step in range(4) for ex in data.examples(step, 2)][:4]
    assert len({int(x.instruction.query_mask.sum()) for x in examples}) > 1  # query texts of different lengths
    with torch.no_grad():
        batch = model(examples)
        for k, x in enumerate(examples):
            one = model([x])
            t = one.pred_boxes.shape[1]
            assert_tensors_close(batch.pred_boxes[k, :t], one.pred_boxes[0], ulps=ROUNDING_ULPS)
            assert_tensors_close(batch.token_logits[k, :t], one.token_logits[0], ulps=ROUNDING_ULPS)
