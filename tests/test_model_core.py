"""The tiny SpaceVLLM-style model end to end on real MP4s: encode once, save/load, training forward.

Where two computations of one output are compared (many queries against one at a time, a reloaded
model, the teacher-forced pass against the cached one, a zero-initialised extra path) texts, spans and
frame keys are equal exactly and floats to float32 rounding (tests/close.py). Those tests are marked
``numerics``: ``make test`` reruns them under ATEN_CPU_CAPABILITY=default and avx2 and 1 and 2 torch
threads, the kernels other CPUs take, so a tolerance that holds on one CPU only fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from close import assert_same_prediction, assert_tensors_close, isclose, tensors_close

from stvg_plugin.data import GroundingQuery, read_queries
from stvg_plugin.models import Grounder, GroundingInputs, SpaceVLLMForGrounding, build_tiny_model, load_grounder
from stvg_plugin.models.checkpoint import UnsafeCheckpointError
from stvg_plugin.models.space_decoder import QueryGuidedSpaceDecoder, grid_centres, grid_shape
from stvg_plugin.video import VideoReadError

QUERIES = ["the red circle", "a blue square moving left", "the small green triangle", "the yellow star"]
SYNTH_FRAME_PX = 160  # the larger side of generate_synthetic's default 160 x 120 frames: the pixel boxes' scale


@pytest.fixture(scope="module")
def grounder():
    return load_grounder("spacevllm_tiny")


@pytest.fixture(scope="module")
def video(synth_dir: Path) -> str:
    return read_queries(synth_dir / "annotations.jsonl")[0].video


def _assert_same(a, b, frame_px: float = SYNTH_FRAME_PX):
    assert_same_prediction(a, b, frame_px)


def test_space_decoder_shapes_and_ranges():
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(llm_dim=64, dim=32, heads=2, layers=2)
    out = dec(
        torch.randn(2, 5, 4, 64) * 10,
        torch.randn(2, 5, 64) * 10,
        torch.randn(2, 7, 64),
        text_pad=torch.tensor([[False] * 7, [False] * 3 + [True] * 4]),
    )
    assert out.boxes.shape == (2, 5, 4) and out.relevance_logits.shape == (2, 5)
    assert torch.all((out.boxes > 0) & (out.boxes < 1))
    assert torch.isfinite(out.relevance_logits).all()
    # the boxes depend on the referring text (dual cross-attention really reads it)
    other = dec(torch.randn(2, 5, 4, 64), torch.randn(2, 5, 64), torch.randn(2, 7, 64))
    assert not tensors_close(out.boxes, other.boxes)


@pytest.mark.numerics
@pytest.mark.parametrize("queries, keys", [(1, 20), (12, 5)], ids=["query-in-key-space", "projected-keys"])
def test_cross_attention_equals_torch_multihead_attention(queries, keys):
    """``CrossAttentionBlock.attend`` is ``nn.MultiheadAttention`` (its own forward is the reference): output
    and gradients, with padded keys, in both of its ways (few queries: the query moves into the keys'
    space, the key bias cancels and the value bias passes through; many: projected keys and values)."""
    from stvg_plugin.models.space_decoder import CrossAttentionBlock

    torch.manual_seed(0)
    block = CrossAttentionBlock(dim=16, heads=2, mlp_ratio=2)
    with torch.no_grad():  # torch starts both biases at zero: make them count
        block.attn.in_proj_bias.normal_()
        block.attn.out_proj.bias.normal_()
    x, kv = torch.randn(3, queries, 16, requires_grad=True), torch.randn(3, keys, 16, requires_grad=True)
    pad = torch.zeros(3, keys, dtype=torch.bool)
    pad[1, keys // 2 :] = True
    for key_pad in (None, pad):
        ours = block.attend(x, kv, key_pad)
        ref = block.attn(x, kv, kv, key_padding_mask=key_pad, need_weights=False)[0]
        assert_tensors_close(ours, ref, "attention output")
        weights = torch.randn_like(ref)
        grads_ours = torch.autograd.grad((ours * weights).sum(), [x, kv, block.attn.in_proj_weight])
        grads_ref = torch.autograd.grad((ref * weights).sum(), [x, kv, block.attn.in_proj_weight])
        for name, a, b in zip(("x", "kv", "in_proj_weight"), grads_ours, grads_ref):
            assert_tensors_close(a, b, f"gradient of {name}")


@pytest.mark.numerics
def test_space_decoder_reads_each_frame_against_its_own_videos_text():
    """The text cross-attention runs once per video over all its frames' tokens (not once per frame with
    the text copied T times): each frame's output must equal that frame decoded alone with its video's
    text, and the videos of a batch (different texts, one padded) must not read each other's text."""
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(llm_dim=16, dim=16, heads=2, layers=2, text_match=True, text_embeddings=True)
    dec._init_reference_head()
    with torch.no_grad():  # the zero-started text match must take part
        dec.text_key.weight.normal_()
        dec.relevance_from_match.weight.fill_(1.0)
    b, t, p, length = 3, 4, 6, 5
    visual, queries = torch.randn(b, t, p, 16), torch.randn(b, t, 16)
    text, embeds = torch.randn(b, length, 16), torch.randn(b, length, 16)
    pad = torch.zeros(b, length, dtype=torch.bool)
    pad[1, 3:] = True
    whole = dec(visual, queries, text, pad, grid_hw=(2, 3), text_embeds=embeds)
    for i in range(t):
        alone = dec(visual[:, i : i + 1], queries[:, i : i + 1], text, pad, grid_hw=(2, 3), text_embeds=embeds)
        assert_tensors_close(whole.boxes[:, i], alone.boxes[:, 0], f"boxes of frame {i}")
        assert_tensors_close(whole.relevance_logits[:, i], alone.relevance_logits[:, 0], f"relevance of frame {i}")
        assert_tensors_close(whole.token_logits[:, i], alone.token_logits[:, 0], f"token scores of frame {i}")
    swapped = dec(visual, queries, text.flip(0), pad.flip(0), grid_hw=(2, 3), text_embeds=embeds.flip(0))
    assert not tensors_close(whole.token_logits[0], swapped.token_logits[0])


@pytest.mark.numerics
def test_text_match_starts_neutral_ignores_padding_and_scores_the_matching_token():
    """``text_match``: zero-initialised (same output as without it), pads excluded from the text mean,
    and once set, the frame's best match moves the relevance logit."""
    torch.manual_seed(0)
    plain = QueryGuidedSpaceDecoder(llm_dim=16, dim=16, heads=2)
    plain._init_reference_head()
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(llm_dim=16, dim=16, heads=2, text_match=True)
    dec._init_reference_head()
    visual, queries, text = torch.randn(1, 2, 4, 16), torch.randn(1, 2, 16), torch.randn(1, 3, 16)
    a, b = plain(visual, queries, text), dec(visual, queries, text)
    assert_tensors_close(a.boxes, b.boxes, "boxes")
    assert_tensors_close(a.relevance_logits, b.relevance_logits, "relevance_logits")
    with torch.no_grad():
        dec.text_key.weight.copy_(torch.eye(16) * 50.0)
        dec.relevance_from_match.weight.fill_(1.0)
    padded = dec(visual, queries, torch.cat([text, torch.randn(1, 2, 16) * 100], dim=1),
                 text_pad=torch.tensor([[False] * 3 + [True] * 2]))
    assert_tensors_close(padded.boxes, dec(visual, queries, text).boxes, "padded text boxes")
    assert not tensors_close(dec(visual, queries, text).relevance_logits, b.relevance_logits)


def test_reference_box_head_soft_argmax_learns_where_the_object_is():
    """The reference head starts at the grid centre and quickly follows an "object here" token."""
    assert grid_shape(16) == (4, 4) and grid_shape(12) == (3, 4)
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(llm_dim=16, dim=32, heads=2, box_head="reference")
    dec._init_reference_head()
    with pytest.raises(ValueError, match="grid_hw"):
        dec(torch.randn(1, 2, 16, 16), torch.randn(1, 2, 16), torch.randn(1, 3, 16), grid_hw=(3, 4))
    centres = grid_centres(4, 4)
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    text = torch.randn(1, 3, 16)
    for _ in range(150):
        idx = torch.randint(0, 16, (8, 4))
        visual = torch.randn(8, 4, 16, 16) * 0.1
        visual.scatter_(2, idx[..., None, None].expand(8, 4, 1, 16), 1.0)
        out = dec(visual, torch.zeros(8, 4, 16), text.expand(8, -1, -1))
        loss = (out.boxes[..., :2] - centres[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.08  # mean-centre prediction: ~0.25
    mlp = QueryGuidedSpaceDecoder(16, 32, 2, box_head="mlp")  # the first design stays available
    assert mlp(visual, torch.zeros(8, 4, 16), text).boxes.shape == (8, 4, 4)


@pytest.mark.numerics
def test_temporal_mixer_starts_as_identity_and_lets_a_frame_see_its_neighbours():
    """``temporal``: zero-initialised (same output as without it); once trained, frame t's box depends on
    frames t-1 and t+1 (motion is visible) but not on t+2, and without the mixer on no other frame."""
    torch.manual_seed(0)
    plain = QueryGuidedSpaceDecoder(llm_dim=16, dim=16, heads=2)
    plain._init_reference_head()
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(llm_dim=16, dim=16, heads=2, temporal=True)
    dec._init_reference_head()
    visual, queries, text = torch.randn(1, 5, 4, 16), torch.randn(1, 5, 16), torch.randn(1, 3, 16)
    assert_tensors_close(plain(visual, queries, text).boxes, dec(visual, queries, text).boxes, "boxes")
    with torch.no_grad():
        dec.temporal.mix.weight.normal_()
    moved = visual.clone()
    moved[0, 3] += torch.randn(4, 16)  # change frame 3 only
    for model, sees in ((dec, {2, 3, 4}), (plain, {3})):
        a, b = model(visual, queries, text).boxes[0], model(moved, queries, text).boxes[0]
        changed = {t for t in range(5) if not tensors_close(a[t], b[t], scale=1.0)}  # boxes: normalised
        assert changed == sees
    out = dec(visual, queries, text)
    assert out.token_logits.shape == (1, 5, 4) and out.grid_hw == (2, 2)


@pytest.mark.numerics
def test_centre_loss_targets_a_split_whose_mean_is_the_box_centre():
    from stvg_plugin.models.losses import centre_loss, centre_targets

    boxes = torch.tensor([[0.125, 0.125, 0.1, 0.1], [0.3, 0.6, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2], [1.0, 0.0, 0.1, 0.1]])
    target = centre_targets(boxes, (4, 4))
    assert target.shape == (4, 16) and tensors_close(target.sum(-1), torch.ones(4))
    assert target[0, 0] == 1.0  # on a cell centre: all on that cell
    assert target[3, 3] == 1.0  # outside the outer cell centres: clamped to the corner cell
    assert tensors_close(target[2].reshape(4, 4)[1:3, 1:3], torch.full((2, 2), 0.25))
    mean = target @ grid_centres(4, 4)
    assert tensors_close(mean[:3], boxes[:3, :2], scale=1.0)  # the split's mean is the centre itself
    assert centre_targets(boxes, (2, 4)).shape == (4, 8)
    in_span = torch.tensor([True, True, True, False])
    exact = target.clamp(min=1e-12).log()  # logits whose softmax is the target: the minimum (its entropy)
    entropy = -(target[:3] * target[:3].clamp(min=1e-12).log()).sum(-1).mean()
    # float32 log-probabilities of order 1: equal to rounding at scale 1
    assert isclose(centre_loss(exact, (4, 4), boxes, in_span).item(), entropy.item())
    assert centre_loss(exact.roll(5, dims=-1), (4, 4), boxes, in_span) > entropy + 5
    # frames outside the span do not count; none in span is a zero that still backpropagates
    wrong_last = exact.clone()
    wrong_last[3] = exact[3].roll(5)
    assert isclose(centre_loss(wrong_last, (4, 4), boxes, in_span).item(), entropy.item())
    logits = torch.zeros(4, 16, requires_grad=True)
    none = centre_loss(logits, (4, 4), boxes, torch.zeros(4, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0 and logits.grad is not None


def test_tiny_model_is_seeded(grounder, video):
    """Two builds are identical (speed of encode-once is measured in bench/bench_ground.py, not here)."""
    a, b = build_tiny_model("spacevllm_tiny"), build_tiny_model("spacevllm_tiny")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    sampled = grounder.sample(video)
    assert sampled.frames.shape == (8, 32, 32, 3)
    prefix = grounder.model.encode_video(sampled)
    assert prefix.query_states.shape == (8, 64) and prefix.visual_states.shape == (8, 4, 64)
    assert prefix.length == int(prefix.layout.input_ids.shape[0])


@pytest.mark.numerics
def test_ground_many_equals_one_by_one(grounder, video):
    many = grounder.ground(video, QUERIES)
    assert [p.qid for p in many] == ["0", "1", "2", "3"]
    for i, q in enumerate(QUERIES):
        (single,) = grounder.ground(video, [q], qids=[str(i)])
        _assert_same(many[i], single)
    # different queries really give different decoder outputs (the text reaches the boxes)
    assert many[0].span_frames != many[1].span_frames or any(
        not isclose(x, y, scale=SYNTH_FRAME_PX) for f in many[0].boxes for x, y in zip(many[0].boxes[f], many[1].boxes[f])
    )


def test_prediction_is_well_formed(video, synth_dir):
    """With the relevance span at threshold 0 every answer has a span, so every check below must hold
    (a model that never parses fails here instead of skipping them)."""
    q = read_queries(synth_dir / "annotations.jsonl")[0]
    grounder = load_grounder({"preset": "spacevllm_tiny", "span_source": "relevance", "relevance_threshold": 0.0})
    (pred,) = grounder.ground(video, [q.query], qids=[q.qid])
    assert pred.qid == q.qid and isinstance(pred.raw_text, str)
    assert not pred.parse_failed and pred.span_source == "relevance"
    s, e = pred.span_frames
    assert 0 <= s < e <= q.num_frames
    assert sorted(pred.boxes) == list(range(s, e))
    for box in pred.boxes.values():
        assert 0 <= box[0] < box[2] <= q.width and 0 <= box[1] < box[3] <= q.height


def test_ground_rejects_empty_query(grounder, video):
    with pytest.raises(ValueError, match="empty"):
        grounder.ground(video, ["fine", ""])


def test_predict_groups_by_video_and_turns_bad_input_into_errors(grounder, synth_dir, bad_videos):
    queries = read_queries(synth_dir / "annotations.jsonl")[:3]
    bad_path = str(next(iter(bad_videos.values())))
    queries.append(GroundingQuery(qid="bad", video=bad_path, query="anything"))
    queries.append(GroundingQuery(qid="empty", video=queries[0].video, query="  "))
    preds = {p.qid: p for p in grounder.predict(queries, progress=False)}
    assert set(preds) == {q.qid for q in queries}
    assert preds["bad"].error and bad_path in preds["bad"].error
    assert preds["empty"].error == "empty query text"
    for q in queries[:3]:
        assert preds[q.qid].error is None
    with pytest.raises(VideoReadError):
        grounder.ground(bad_path, ["x"])


@pytest.mark.numerics
def test_save_and_load_predict_identically(tmp_path, grounder, video):
    model = grounder.model
    model.save_pretrained(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    reloaded = load_grounder("spacevllm_tiny", checkpoint=tmp_path / "ckpt")
    for (k, va), vb in zip(model.state_dict().items(), reloaded.model.state_dict().values()):
        assert torch.equal(va, vb), k
    for a, b in zip(grounder.ground(video, QUERIES[:2]), reloaded.ground(video, QUERIES[:2])):
        _assert_same(a, b)  # same weights (checked exactly above); two models' runs agree to rounding


def test_pickle_checkpoint_refused_unless_allowed(tmp_path, grounder):
    ckpt = tmp_path / "pickled"
    grounder.model.save_pretrained(ckpt)
    state = {k: v.contiguous() for k, v in grounder.model.state_dict().items()}
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")  # a pickle file, as old checkpoints ship
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        SpaceVLLMForGrounding.from_pretrained(ckpt)
    with pytest.raises(UnsafeCheckpointError):
        load_grounder("spacevllm_tiny", checkpoint=ckpt)
    allowed = SpaceVLLMForGrounding.from_pretrained(ckpt, allow_pickle=True)
    assert torch.equal(allowed.st_query_embed.weight, grounder.model.st_query_embed.weight)


def test_runtime_overrides_apply_to_checkpoint(tmp_path, grounder):
    grounder.model.save_pretrained(tmp_path / "c")
    g = load_grounder(
        {"preset": "spacevllm_tiny", "num_frames": 4, "span_source": "relevance"}, checkpoint=tmp_path / "c"
    )
    assert g.num_frames == 4 and g.model.config.span_source == "relevance"
    assert json.loads((tmp_path / "c" / "config.json").read_text())["num_frames"] == 8


@pytest.mark.numerics
def test_training_forward_lm_loss_on_answer_only_and_matches_inference(grounder, video):
    model = build_tiny_model("spacevllm_tiny")
    sampled = grounder.sample(video)
    f = sampled.indices
    boxes = {int(i): [10.0, 20.0, 60.0, 80.0] for i in f[2:6]}
    inputs = model.prepare_inputs(
        sampled, "the red circle", "from 1.0 s to 2.0 s", span_frames=(int(f[2]), int(f[5]) + 1), boxes=boxes
    )
    assert isinstance(inputs, GroundingInputs)
    assert inputs.in_span.tolist() == [False, False, True, True, True, True, False, False]
    model.train()
    out = model([inputs, inputs])
    assert out.pred_boxes.shape == (2, 8, 4) and out.relevance_logits.shape == (2, 8)
    n_answer = len("from 1.0 s to 2.0 s") + 1  # characters + eos
    assert out.answer_logits[0].shape[0] == n_answer
    assert torch.isfinite(out.loss) and set(out.losses) >= {"loss_l1", "loss_giou", "loss_relevance"}
    out.loss.backward()
    assert model.st_query_embed.weight.grad is not None and model.st_query_embed.weight.grad.abs().sum() > 0
    assert model.space_decoder.box_head[0].weight.grad.abs().sum() > 0
    # a changed answer changes the LM loss but not the decoder outputs (causal: answer comes last)
    model.eval()
    with torch.no_grad():
        a = model(inputs)
        b = model(model.prepare_inputs(sampled, "the red circle", "from 9.0 s to 9.5 s"))
        prefix = model.encode_video(sampled)
    assert not isclose(a.loss_lm.item(), b.loss_lm.item())
    assert_tensors_close(a.pred_boxes, b.pred_boxes, "pred_boxes")
    # the teacher-forced pass and the cached inference path see the same hidden states
    pred = Grounder(model).ground_prefix(prefix, "the red circle")
    with torch.no_grad():
        dec = model.space_decoder(
            prefix.visual_states[None],
            prefix.query_states[None],
            _query_text_states(model, prefix, "the red circle")[None],
        )
    assert_tensors_close(a.pred_boxes, dec.boxes, "teacher-forced vs cached boxes")
    assert pred.qid == ""


def _query_text_states(model, prefix, query):
    import copy

    instr = model.processor.instruction(query)
    n = instr.input_ids.shape[0]
    pos = torch.arange(prefix.next_position, prefix.next_position + n)[None]
    out = model.backbone.language_model(
        inputs_embeds=model.backbone.embed_text(instr.input_ids[None]),
        position_ids=pos,
        cache=copy.deepcopy(prefix.cache),
        use_cache=True,
    )
    return out.last_hidden_state[0][instr.query_mask]


def test_box_head_text_path_decodes(grounder, video, monkeypatch):
    """box_head=text: the boxes come from the answer text, in the video's pixels. Random weights write
    no parseable boxes, so the text the LM writes is fixed here; the path from text to boxes is tested."""
    model = build_tiny_model({"preset": "spacevllm_tiny", "box_head": "text", "span_source": "text",
                              "max_new_tokens_text_boxes": 40})
    sampled = grounder.sample(video)
    info = sampled.info
    box = [0.25, 0.5, 0.75, 1.0]
    answer = model.processor.format_answer((0.0, float(info.duration_s)), dict.fromkeys(range(len(sampled.indices)), box))
    monkeypatch.setattr(model.processor, "decode", lambda ids: answer)
    pred = Grounder(model).ground_prefix(model.encode_video(sampled), "the red circle", "q")
    assert pred.raw_text == answer and not pred.parse_failed and pred.boxes
    expected = [box[0] * info.width, box[1] * info.height, box[2] * info.width, box[3] * info.height]
    for frame, got in pred.boxes.items():
        assert got == pytest.approx(expected, abs=1e-6 * max(info.width, info.height)), frame


