"""``stvg demo``: the whole loop on the embedded synthetic default, in one command.

synth (held-out; + training videos with ``train=true``) -> the tiny model: the checkpoint shipped in
``stvg_plugin/assets/spacevllm_tiny_demo`` (made by ``stvg demo train=true``; its folder records the
command, config, data seed and training log), or with ``train=true`` trained from scratch now
(~15 min on 2 cores) -> score it with the stock lmms-eval CLI on
``stvg_synthetic`` -> ``stvg evaluate`` the same predictions (and a chance baseline) -> import
everything into the persistent FiftyOne dataset ``stvg-demo`` -> report (plots + rendered tubes)
-> ``outputs/demo/summary.json``.

Each step runs as its own process through the public commands (``stvg ...``, ``stvg lmms-eval``,
``python -m fiftyone_plugin.demo``) so the core never imports lmms-eval or FiftyOne, each step's
config is saved beside its outputs, and a re-run overwrites rather than duplicates. Reading the
lmms-eval samples back is the core's own format reader (:mod:`stvg_plugin.formats.lmms_stvg_samples`),
called in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stvg_plugin.commands.common import ConfigError
from stvg_plugin.data import write_json

SUMMARY_KEYS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")
#: the checkpoint the demo uses unless ``train=true`` (trained by ``stvg demo train=true``; see its TRAINING.md)
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "spacevllm_tiny_demo"


def _stvg() -> list[str]:
    return [sys.executable, "-m", "stvg_plugin.cli"]


class _Steps:
    """Runs numbered steps (subprocesses, or an in-process core call), printing a header and the wall time of each."""

    def __init__(self, total: int, env: dict[str, str]):
        self.total, self.n, self.env, self.times = total, 0, env, {}

    def run(self, title: str, *cmds: list[str] | Callable[[], None], extra_env: dict[str, str] | None = None) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {title}", flush=True)
        t0 = time.perf_counter()
        env = {**self.env, **(extra_env or {})}
        for cmd in cmds:
            if callable(cmd):
                cmd()
                continue
            res = subprocess.run(cmd, env=env, check=False)
            if res.returncode != 0:
                raise ConfigError(f"demo step '{title}' failed (exit {res.returncode}): {' '.join(cmd)}")
        self.times[title] = round(time.perf_counter() - t0, 1)
        print(f"    done in {self.times[title]:.1f}s", flush=True)


def _generator_overrides(options: dict) -> list[str]:
    """``stvg synth`` overrides for ``generate_synthetic`` keyword arguments."""
    return [f"generator.{k}={json.dumps(v)}" for k, v in options.items()]


def _samples_to_predictions(lmms_dir: Path, task: str, preds: Path) -> None:
    """The newest lmms-eval samples file of ``task`` as the predictions JSONL the next steps read."""
    from stvg_plugin.formats.lmms_stvg_samples import newest_samples_to_predictions

    written = newest_samples_to_predictions(lmms_dir, task, preds)
    if written is None:
        raise ConfigError(f"no *_samples_{task}.jsonl under {lmms_dir} (was --log_samples given?)")
    print(f"wrote {written[1]} predictions from {written[0]} to {preds}", flush=True)


def _metrics(summary_path: Path) -> dict[str, float]:
    summary = json.loads(summary_path.read_text())
    return {k: float(summary[k]) for k in SUMMARY_KEYS}


def run(cfg: DictConfig, output_dir: Path) -> dict:
    out = output_dir.resolve()
    train_data, heldout_data = out / "data" / "train", out / "data" / "heldout"
    train_dir, lmms_dir = out / "train", out / "lmms_eval"
    preds, chance_preds = out / "predictions.jsonl", out / "chance_predictions.jsonl"
    for stale in (train_dir, lmms_dir, out / "eval", out / "chance", out / "report"):
        shutil.rmtree(stale, ignore_errors=True)  # a re-run starts clean: no stale fields or files

    train = bool(cfg.get("train", False))
    checkpoint = Path(str(cfg.get("checkpoint") or SHIPPED_CHECKPOINT)).expanduser().resolve()
    if train:
        print("model: trained from scratch now (train=true: the recipe of the shipped checkpoint)", flush=True)
    elif not (checkpoint / "model.safetensors").is_file():
        raise ConfigError(f"checkpoint={checkpoint} holds no model.safetensors: pass checkpoint=DIR, or train=true to "
                          "train the demo model from scratch")
    elif cfg.get("checkpoint"):
        print(f"model: the checkpoint {checkpoint} (checkpoint=...)", flush=True)
    else:
        print(f"model: the shipped checkpoint {checkpoint} (made by `stvg demo train=true`, see TRAINING.md there); "
              "train=true trains it from scratch instead", flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "FIFTYONE_DO_NOT_TRACK": "true", "TOKENIZERS_PARALLELISM": "false"}
    steps = _Steps(total=7 if train else 6, env=env)
    stvg = _stvg()
    synth = cfg.synth
    options = OmegaConf.to_container(synth.get("generator") or {}, resolve=True)
    # the training set may differ (e.g. more distractors); the held-out set keeps `generator`
    train_only = synth.get("train_generator")
    train_options = {**options, **(OmegaConf.to_container(train_only, resolve=True) if train_only else {})}
    generator, train_generator = _generator_overrides(options), _generator_overrides(train_options)
    heldout_cmd = [*stvg, "synth", f"output_dir={heldout_data}", f"num_videos={synth.heldout_videos}",
                   f"seed={synth.heldout_seed}", *generator]
    if train:
        steps.run("synthesize train and held-out videos",
                  [*stvg, "synth", f"output_dir={train_data}", f"num_videos={synth.train_videos}",
                   f"seed={synth.train_seed}", *train_generator], heldout_cmd)
        steps.run("train the tiny SpaceVLLM model (learnability run)", [
            *stvg, "train", f"model={cfg.train_model}", f"annotations={train_data / 'annotations.jsonl'}",
            f"output_dir={train_dir}", *[str(o) for o in cfg.train_overrides]])
        checkpoint = train_dir / "final"
    else:
        steps.run("synthesize held-out videos", heldout_cmd)

    steps.run("score it with the stock lmms-eval CLI on stvg_synthetic", [
        *stvg, "lmms-eval", "--model", "spacevllm",
        "--model_args", f"pretrained={checkpoint}" + "".join(f",{k}={v}" for k, v in dict(cfg.get("lmms_model_args") or {}).items()),
        "--tasks", "stvg_synthetic", "--output_path", str(lmms_dir), "--log_samples",
        "--batch_size", "1", "--device", "cpu"],
        lambda: _samples_to_predictions(lmms_dir, "stvg_synthetic", preds),
        extra_env={"STVG_SYNTHETIC_DIR": str(heldout_data)})

    heldout_ann = heldout_data / "annotations.jsonl"
    steps.run("stvg evaluate the same predictions", [
        *stvg, "evaluate", "benchmark=unified", f"annotations={heldout_ann}", f"predictions={preds}",
        f"output_dir={out / 'eval'}"])
    steps.run("score the chance baseline (random span, random box)",
              [sys.executable, "-m", "stvg_plugin.training.baselines", str(heldout_ann), str(chance_preds),
               "--seed", str(cfg.chance_seed)],
              [*stvg, "evaluate", "benchmark=unified", f"annotations={heldout_ann}", f"predictions={chance_preds}",
               f"output_dir={out / 'chance'}"])

    steps.run(f"import into the FiftyOne dataset '{cfg.dataset_name}'", [
        sys.executable, "-m", "fiftyone_plugin.demo", "--dataset", cfg.dataset_name,
        "--annotations", str(heldout_ann), "--predictions", str(preds), "--chance", str(chance_preds),
        "--lmms-output", str(lmms_dir)])
    steps.run("write the report (plots and rendered tubes)", [
        *stvg, "report", f"annotations={heldout_ann}", f"predictions={preds}", f"output_dir={out / 'report'}",
        f"num_videos={cfg.render_videos}"])

    model_metrics = _metrics(out / "eval" / "summary.json")
    chance_metrics = _metrics(out / "chance" / "summary.json")
    summary = {"model": model_metrics, "chance": chance_metrics, "checkpoint": str(checkpoint),
               "model_source": "trained" if train else "given" if cfg.get("checkpoint") else "shipped",
               "fiftyone_dataset": cfg.dataset_name, "step_seconds": steps.times}
    write_json(out / "summary.json", summary)
    print(f"\nheld-out synthetic set (tubedetr protocol); model: {summary['model_source']} {checkpoint}")
    print(f"{'':<10}" + "".join(f"{k:>10}" for k in SUMMARY_KEYS))
    for name, m in (("model", model_metrics), ("chance", chance_metrics)):
        print(f"{name:<10}" + "".join(f"{m[k]:>10.3f}" for k in SUMMARY_KEYS))
    print(f"\nwrote {out / 'summary.json'}; report in {out / 'report'}")
    print(f"open the App: .venv/bin/python -m fiftyone_plugin.demo --launch --dataset {cfg.dataset_name}")
    return summary
