"""Resuming ``stvg predict`` and writing training outputs (issue 16, weaker items).

* a resume is keyed by the run's settings: other settings are refused naming what differs, and
  ``resume=false`` starts a new file; never a mix of two models' answers;
* a prediction carrying ``error`` is made again on resume (``retry_errors``, default true);
* ``hydra.run.dir`` cannot silently send the outputs away from ``output_dir``.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from stvg_plugin.cli import main
from stvg_plugin.commands.predict import PARTIAL_NAME, SETTINGS_NAME
from stvg_plugin.data import StvgError


class _Interrupted(StvgError):
    pass


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The next ``predict`` stops after ``n`` predictions, as a kill would (the partial file stays)."""
    from stvg_plugin.models.grounder import Grounder

    real = Grounder.predict

    def predict(self, queries, progress=True):
        for i, pred in enumerate(real(self, queries, progress)):
            if i == n:
                monkeypatch.setattr(Grounder, "predict", real)  # once
                raise _Interrupted("interrupted (injected)")
            yield pred

    monkeypatch.setattr(Grounder, "predict", predict)


def _annotations(synth_dir: Path, tmp_path: Path, missing_first: bool = False) -> Path:
    rows = [json.loads(line) for line in (synth_dir / "annotations.jsonl").read_text().splitlines()][:4]
    for r in rows:
        r["video"] = str(synth_dir / r["video"])
    if missing_first:
        rows[0]["video"] = str(tmp_path / "comes_back.mp4")
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ann


def _predict(ann: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(["predict", "model=spacevllm_tiny", "num_frames=2", f"annotations={ann}", f"output_dir={out}", *extra])


def test_resume_with_other_settings_is_refused(synth_dir, tmp_path, monkeypatch) -> None:
    ann, out = _annotations(synth_dir, tmp_path), tmp_path / "out"
    _interrupt_after(monkeypatch, 2)
    code, _, err = _predict(ann, out)
    assert code == 2 and "interrupted" in err
    assert (out / PARTIAL_NAME).read_text().count("\n") == 2 and (out / SETTINGS_NAME).is_file()
    partial_before = (out / PARTIAL_NAME).read_bytes()

    code, _, err = _cli(["predict", "model=spacevllm_tiny", "num_frames=3", "model.span_source=text",
                         f"annotations={ann}", f"output_dir={out}"])
    assert code == 2
    assert "other settings" in err and "model.num_frames: 2 -> 3" in err and "model.span_source" in err
    assert "resume=false" in err
    assert (out / PARTIAL_NAME).read_bytes() == partial_before and not (out / "predictions.jsonl").exists()

    code, printed, err = _predict(ann, out)  # the same settings resume
    assert code == 0, err
    assert "resuming: 2 predictions already made, 2 to go" in printed

    _interrupt_after(monkeypatch, 1)
    assert _predict(ann, out)[0] == 2
    code, printed, err = _cli(["predict", "model=spacevllm_tiny", "num_frames=3", f"annotations={ann}",
                               f"output_dir={out}", "resume=false"])  # asked for: a new file
    assert code == 0, err
    assert "resuming" not in printed
    assert not (out / PARTIAL_NAME).exists() and not (out / SETTINGS_NAME).exists()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("retry", [True, False])
def test_error_predictions_are_retried_on_resume(synth_dir, tmp_path, monkeypatch, retry) -> None:
    ann, out = _annotations(synth_dir, tmp_path, missing_first=True), tmp_path / "out"
    _interrupt_after(monkeypatch, 2)
    assert _predict(ann, out)[0] == 2
    first = json.loads((out / PARTIAL_NAME).read_text().splitlines()[0])
    assert "file not found" in first["error"]
    shutil.copy(synth_dir / json.loads((synth_dir / "annotations.jsonl").read_text().splitlines()[0])["video"],
                tmp_path / "comes_back.mp4")  # the video is back
    code, printed, err = _predict(ann, out, f"retry_errors={str(retry).lower()}")
    assert code == 0, err
    preds = {json.loads(x)["qid"]: json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()}
    assert len(preds) == 4
    if retry:
        assert "1 with an error, retried" in printed and "error" not in preds[first["qid"]]
    else:
        assert preds[first["qid"]]["error"] == first["error"]


def test_hydra_run_dir_cannot_redirect_the_outputs(synth_dir, tmp_path) -> None:
    ann, out, other = _annotations(synth_dir, tmp_path), tmp_path / "out", tmp_path / "elsewhere"
    code, _, err = _predict(ann, out, f"hydra.run.dir={other}")
    assert code == 2
    assert "hydra.run.dir" in err and "output_dir" in err
    assert not (other / "predictions.jsonl").exists() and not (out / "predictions.jsonl").exists()
