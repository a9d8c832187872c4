"""``stvg predict``: run a grounding model over annotations and write ``predictions.jsonl``.

Resumable: each prediction is appended (and flushed) to ``predictions.partial.jsonl`` as it is
made; a re-run skips the qids already there (a line cut off by a kill is dropped and redone), and
the final ``predictions.jsonl`` is written atomically in annotation order. A bad video never
stops the run: its queries get predictions carrying ``error``, listed at the end.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stvg_plugin.commands.common import load_queries_from_cfg, require_path
from stvg_plugin.data import AnnotationError, GroundingPrediction, atomic_write_text, write_jsonl

log = logging.getLogger("stvg.predict")

PARTIAL_NAME = "predictions.partial.jsonl"


def read_partial(path: Path) -> dict[str, dict]:
    """Complete lines of an interrupted run, by qid; rewrites the file without a torn last line.

    A line counts only if it ends with a newline and reads back as a valid prediction; anything
    else (a line cut off by a kill, garbage) is dropped and its query redone. The rewrite is atomic,
    so a second kill during it cannot lose the lines already made.
    """
    if not path.exists():
        return {}
    done: dict[str, dict] = {}
    good_lines: list[str] = []
    dropped = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                dropped += 1  # the last line, cut off by a kill
                break
            try:
                line = raw.decode("utf-8")
                obj = json.loads(line)
                qid = GroundingPrediction.from_json(obj).qid  # a valid prediction, not just JSON
            except (ValueError, RecursionError, AnnotationError):  # JSONDecodeError, UnicodeDecodeError
                dropped += 1
                continue
            done[qid] = obj
            good_lines.append(line)
    if dropped:
        log.warning("%s: dropped %d incomplete or unreadable line(s); their queries are redone", path, dropped)
        atomic_write_text(path, "".join(good_lines))
    return done


def run(cfg: DictConfig, output_dir: Path) -> Path:
    queries = load_queries_from_cfg(cfg)
    checkpoint = require_path(cfg, "checkpoint", kind="dir") if cfg.get("checkpoint") else None
    # null in a model config means "the preset's value": drop it rather than override with None
    model_cfg = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if v is not None}
    if cfg.get("num_frames"):
        model_cfg["num_frames"] = int(cfg.num_frames)

    output_dir.mkdir(parents=True, exist_ok=True)
    partial = output_dir / PARTIAL_NAME
    if not cfg.get("resume", True):
        partial.unlink(missing_ok=True)  # else its stale lines would be picked up by a later resume
    done = read_partial(partial)
    todo = [q for q in queries if q.qid not in done]
    if done:
        print(f"resuming: {len(done)} predictions already made, {len(todo)} to go")
    if todo:
        from stvg_plugin.models import load_grounder  # torch + transformers: seconds, so after the checks

        grounder = load_grounder(model_cfg, checkpoint=str(checkpoint) if checkpoint else None, device=cfg.device)
        with partial.open("a", encoding="utf-8") as fh:
            for pred in grounder.predict(todo, progress=True):
                obj = pred.to_json()
                done[pred.qid] = obj
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
                fh.flush()

    ordered = [done[q.qid] for q in queries if q.qid in done]
    out = output_dir / "predictions.jsonl"
    write_jsonl(out, ordered)
    partial.unlink(missing_ok=True)
    failed = [GroundingPrediction.from_json(o) for o in ordered if o.get("error")]
    if failed:
        print(f"{len(failed)} queries could not be grounded:")
        for p in failed[:20]:
            print(f"  {p.qid}: {p.error}")
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (key 'error' in {out.name})")
    print(f"wrote {len(ordered)} predictions to {out}")
    return out
