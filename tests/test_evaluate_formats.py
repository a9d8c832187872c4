"""Issue 15: ``stvg evaluate`` reads the official evaluators' own prediction files and gives their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stvg_plugin.cli import main
from stvg_plugin.formats import FormatError, detect_format, read_predictions_file
from stvg_plugin.formats.vue_stg_csv import read_vue_stg_benchmark
from stvg_plugin.metrics import evaluate

HCSTVG_ENTRY = {"img_num": 100, "width": 100, "height": 100, "caption": "the man", "st_frame": 11,
                "bbox": [[0, 0, 10, 10]] * 10}  # 1-based frames 11..20 = our 0-based 10..19  # fmt: skip


def _evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "out"
    assert main(["evaluate", *args, f"output_dir={out}"]) == 0
    return json.loads((out / "summary.json").read_text())


def test_eval_hcvg_json_reproduces_eval_hcvg(tmp_path):
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps({"a.mp4": HCSTVG_ENTRY, "b.mp4": HCSTVG_ENTRY}))
    # eval_hcvg numbering (1-based, inclusive): predicted span 16..20 with exact boxes on 11..20 ->
    # all_frame = 20 - 11 + 1 = 10, 10 IoUs of 1 -> vIoU = tIoU = 1 (eval_hcvg.py l.58-65); b missing -> 0
    pred = {"a.mp4": {"st_frame": 16, "ed_frame": 20, "bbox": {str(f): [0, 0, 10, 10] for f in range(11, 21)}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(pred))
    assert detect_format(path) == "eval_hcvg"
    s = _evaluate(tmp_path, "benchmark=hcstvg_v1", f"annotations={ann}", f"predictions={path}", "protocol=official_hcstvg")
    assert s["m_vIoU"] == pytest.approx(0.5) and s["m_tIoU"] == pytest.approx(0.5) and s["num_missing"] == 1
    assert s["predictions_format"] == "eval_hcvg" and s["repair"] is False


def test_tubedetr_prediction_dicts(tmp_path):
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps({"a.mp4": HCSTVG_ENTRY}))
    # TubeDETR frames = st_frame read as 0-based: the tube is 11..20; sted [11, 21) exactly, boxes on every frame
    pred = {"predictions": {f"a.mp4_{f}": {"boxes": [[0, 0, 10, 10]]} for f in range(0, 99)},
            "video_predictions": {"a.mp4": {"sted": [11, 21], "qtype": "declarative"}}}  # fmt: skip
    path = tmp_path / "tubedetr.json"
    path.write_text(json.dumps(pred))
    s = _evaluate(tmp_path, "benchmark=hcstvg_v1", f"annotations={ann}", f"predictions={path}")
    assert s["protocol"] == "tubedetr" and s["m_tIoU"] == 1.0 and s["m_vIoU"] == 1.0


VSTAR_ITEM = {"vid": "v", "domain": "Sports", "fps": 1.0, "frame_count": 100, "width": 100, "height": 100,
              "question": "What?", "answer": "A ball.", "timestamps": [2, 6],
              "bboxes": [{"timestamp": 3, "frame_index": 3, "xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}]}  # fmt: skip


def test_vstar_results_file_is_both_annotations_and_predictions(tmp_path):
    items = [
        {**VSTAR_ITEM, "answer_vqa": "A ball.", "answer_temporal": "[2, 6]", "answer_spatial": {"3": [0, 0, 10, 10]},
         "VQA_score": 3},
        {**VSTAR_ITEM, "answer_vqa": "", "answer_temporal": "[2, 6]"},  # skipped: l.214 of eval.py
        {**VSTAR_ITEM, "answer_vqa": "A cat.", "answer_temporal": "from 2 to 6", "VQA_score": 0},
    ]  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(items))
    s = _evaluate(tmp_path, "benchmark=vstar", f"annotations={path}", f"predictions={path}")
    assert s["predictions_format"] == "vstar" and s["num_queries"] == 3
    assert s["m_tIoU"] == pytest.approx(0.5) and s["m_vIoU"] == pytest.approx(0.5)
    assert s["vstar_vqa_accuracy"] == pytest.approx(1 / 3)  # correct / len(data), l.339
    assert s["vstar_AM1"] == pytest.approx((1 / 3 + 0.5 + 0.5) / 3)
    assert s["duration_Medium_vqa_accuracy"] == pytest.approx(0.5)  # 100 s video: Medium; rated items only


def test_vstar_accuracy_passed_in_without_ratings(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{**VSTAR_ITEM, "answer_vqa": "x", "answer_temporal": [2, 6]}]))
    s = _evaluate(tmp_path, "benchmark=vstar", f"annotations={path}", f"predictions={path}", "vstar_accuracy=0.5")
    assert s["vstar_vqa_accuracy"] == 0.5 and s["vstar_AM1"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_lmms_samples_with_lmms_compat_from_the_cli(tmp_path):
    ann = tmp_path / "charades.json"
    docs = [{"video": "A.mp4", "caption": "a person opens a door", "timestamp": [24.3, 30.4]},
            {"video": "A.mp4", "caption": "a person opens a door", "timestamp": [24.3, 30.4]},
            {"video": "B.mp4", "caption": "someone sits", "timestamp": [5.0, 9.0]}]  # fmt: skip
    ann.write_text(json.dumps(docs))
    texts = ["happens in the 24.0 - 30.0 seconds", "I do not know", "from 00:05 to 00:09"]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"doc_id": i, "doc": d, "filtered_resps": [t]}) + "\n"
                               for i, (d, t) in enumerate(zip(docs, texts))))  # fmt: skip
    assert detect_format(samples) == "lmms_samples"
    s = _evaluate(tmp_path, "benchmark=charades_sta", f"annotations={ann}", f"predictions={samples}", "protocol=tvg",
                  "lmms_compat=true")  # fmt: skip
    # lmms-eval utils.py l.77 keys video>>>caption>>>timestamp: the duplicate keeps the last text (0) -> (0 + 1) / 2
    assert s["num_merged_duplicate_keys"] == 1 and s["mIoU"] == pytest.approx(0.5)


def test_vue_stg_csvs(tmp_path):
    (tmp_path / "video.csv").write_text("video_id,video_duration\nV1,30.0\n")
    (tmp_path / "query.csv").write_text("query_id,query_text,video_id\nq1,a man,V1\n")
    (tmp_path / "tubes.csv").write_text("query_id,time_ms,time_normalized,x0,y0,x1,y1\n"
                                        "q1,0,0,0,0,0.5,0.5\nq1,1000,0,0,0,0.5,0.5\n")  # fmt: skip
    pred = tmp_path / "pred.csv"
    pred.write_text("query_id,time_ms,x0,y0,x1,y1\nq1,400,0,0,0.5,0.5\nq1,100,0,0,0.5,0.25\nq1,1200,0.5,0.5,0,0\n"
                    "q1,1300,,0,1,1\n")  # fmt: skip
    qs = read_vue_stg_benchmark(tmp_path)
    preds = list(read_predictions_file(pred, "auto", qs))
    assert len(preds[0].extra["vue_rows"]) == 3  # the NaN row is dropped (dropna)
    row = evaluate(qs, preds, protocol="vue_stg").per_query[0]
    # second 0: first row (400 ms) is exact; second 1: swapped corners sanitised to (0, 0, .5, .5), exact
    assert row["t_IoU"] == 1.0 and row["v_IoU"] == pytest.approx(1.0)
    s = _evaluate(tmp_path, "benchmark=vue_stg", f"annotations={tmp_path / 'tubes.csv'}", f"predictions={pred}",
                  "multi_boxes_policy=last")  # fmt: skip
    # "last": second 0 scores the 100 ms row (IoU 0.5) -> v_IoU (0.5 + 1) / 2
    assert s["protocol"] == "vue_stg" and s["predictions_format"] == "vue_stg" and s["v_IoU"] == pytest.approx(0.75)


def test_ambiguous_file_needs_a_format(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"something": 1}))
    with pytest.raises(FormatError, match="predictions_format"):
        detect_format(path)


def test_vstar_served_judge_rates_answers(tmp_path):
    import http.server
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["messages"])
            candidate = body["messages"][1]["content"].split("Candidate answer: ")[1].split("\n")[0]
            reply = {"choices": [{"message": {"content": "3" if candidate == "A ball." else "zero"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        items = [{**VSTAR_ITEM, "answer_vqa": "A ball.", "answer_temporal": [2, 6]},
                 {**VSTAR_ITEM, "answer_vqa": "A cat.", "answer_temporal": [2, 6]}]  # fmt: skip
        path = tmp_path / "results.json"
        path.write_text(json.dumps(items))
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        s = _evaluate(tmp_path, "benchmark=vstar", f"annotations={path}", f"predictions={path}",
                      f"judge='openai:{url}#judge-model'")  # quoted: a Hydra override value with ':' and '#'  # fmt: skip
    finally:
        server.shutdown()
    # "3" -> correct; "zero" -> int() fails -> -1 (eval.py l.61-64), 0 in the average score
    assert s["vstar_vqa_accuracy"] == 0.5 and s["vstar_vqa_avg_all_score"] == 1.5
    assert seen[0][0]["role"] == "system" and "Question: What?\nGroundtruth answer: A ball." in seen[0][1]["content"]


def test_vstar_hf_judge_on_a_tiny_checkpoint(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from stvg_plugin.metrics.vstar_judge import make_judge
    from stvg_plugin.models.families._tiny import byte_tokenizer, chatml_template

    tok = byte_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], chat_template=chatml_template(""))
    cfg = Qwen2Config(vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path / "judge")
    tok.save_pretrained(tmp_path / "judge")
    judge = make_judge(f"hf:{tmp_path / 'judge'}")
    rating = judge("What?", "A ball.", "A ball.")
    assert rating in (-1, 0, 1, 2, 3)  # random weights: whatever it says is read as eval.py reads it
