"""``stvg predict``: run a grounding model over annotations and write ``predictions.jsonl``.

Resumable: each prediction is appended (and flushed) to ``predictions.partial.jsonl`` as it is
made; a re-run skips the qids already there (a line cut off by a kill is dropped and redone), and
the final ``predictions.jsonl`` is written atomically in annotation order. A bad video never
stops the run: its queries get predictions carrying ``error``, listed at the end.

Resume is keyed by the run's settings (model spec, checkpoint, annotations, benchmark options),
recorded in ``predictions.partial.settings.json`` before the first prediction: a re-run with other
settings is refused, naming what differs (``resume=false`` starts a new file instead), so the
output never mixes two models' answers. Predictions carrying ``error`` are made again on resume
(the video may be back) unless ``retry_errors=false``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stvg_plugin.commands.common import ConfigError, load_queries_from_cfg, require_path
from stvg_plugin.data import (
    AnnotationError,
    GroundingPrediction,
    append_jsonl,
    atomic_write_text,
    decode_json_line,
    write_json,
    write_jsonl,
)

log = logging.getLogger("stvg.predict")

PARTIAL_NAME = "predictions.partial.jsonl"
SETTINGS_NAME = "predictions.partial.settings.json"


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
                obj = decode_json_line(line)
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


def _flat(obj: object, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def check_resume_settings(output_dir: Path, settings: dict) -> None:
    """Record ``settings`` for a new partial file, or refuse to resume one made with other settings."""
    partial, record = output_dir / PARTIAL_NAME, output_dir / SETTINGS_NAME
    if partial.exists() and record.exists():
        try:
            before = json.loads(record.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            before = None
        if before != settings:
            old, new = _flat(before) if isinstance(before, dict) else {}, _flat(settings)
            diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new}) if old.get(k) != new.get(k)]
            raise ConfigError(
                f"{partial} was made with other settings ({'; '.join(diff[:6]) or 'unreadable record'}); "
                "rerun with the same settings to resume, or pass resume=false to start a new file"
            )
        return
    if partial.exists():  # made before settings were recorded: assumed to match, from now on checked
        log.warning("%s has no settings record; resuming it as if made with these settings", partial)
    atomic_write_text(record, json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n")


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
    extra = cfg.get("benchmark_kwargs") or {}
    check_resume_settings(output_dir, {
        "model": model_cfg,
        "checkpoint": str(checkpoint.resolve()) if checkpoint else None,
        "benchmark": str(cfg.benchmark),
        "annotations": str(Path(str(cfg.annotations)).expanduser().resolve()),
        "video_root": str(cfg.video_root) if cfg.get("video_root") else None,
        "benchmark_kwargs": OmegaConf.to_container(extra, resolve=True) if not isinstance(extra, dict) else extra,
    })
    done = read_partial(partial)
    retried = [qid for qid, obj in done.items() if obj.get("error")] if cfg.get("retry_errors", True) else []
    for qid in retried:
        del done[qid]  # made again; the new line, appended later, is the one read back
    todo = [q for q in queries if q.qid not in done]
    if done or retried:
        print(f"resuming: {len(done)} predictions already made, {len(todo)} to go"
              + (f" ({len(retried)} with an error, retried)" if retried else ""))
    if todo:
        from stvg_plugin.models import load_grounder  # torch + transformers: seconds, so after the checks

        grounder = load_grounder(model_cfg, checkpoint=str(checkpoint) if checkpoint else None, device=cfg.device)
        with partial.open("a", encoding="utf-8") as fh:
            for pred in grounder.predict(todo, progress=True):
                obj = pred.to_json()
                done[pred.qid] = obj
                append_jsonl(fh, obj)

        summary = getattr(grounder, "run_summary", None)
        if summary is not None:  # served backends: requests, cache hits, latency, tokens (never the key)
            stats = summary()
            write_json(output_dir / "run_summary.json", stats)
            print(f"served: {stats['requests']} requests, {stats['cache_hits']} cached, {stats['errors']} errors, "
                  f"{stats['prompt_tokens']} prompt + {stats['completion_tokens']} completion tokens")

    ordered = [done[q.qid] for q in queries if q.qid in done]
    out = output_dir / "predictions.jsonl"
    write_jsonl(out, ordered)
    partial.unlink(missing_ok=True)
    (output_dir / SETTINGS_NAME).unlink(missing_ok=True)
    failed = [GroundingPrediction.from_json(o) for o in ordered if o.get("error")]
    if failed:
        print(f"{len(failed)} queries could not be grounded:")
        for p in failed[:20]:
            print(f"  {p.qid}: {p.error}")
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more (key 'error' in {out.name})")
    print(f"wrote {len(ordered)} predictions to {out}")
    return out
