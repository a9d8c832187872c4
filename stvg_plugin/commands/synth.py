"""``stvg synth``: the embedded default dataset (real MP4s of moving shapes, exact GT tubes)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stvg_plugin.synth import generate_synthetic


def run(cfg: DictConfig, output_dir: Path) -> Path:
    options = OmegaConf.to_container(cfg.get("generator") or {}, resolve=True)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
    path = generate_synthetic(output_dir, num_videos=int(cfg.num_videos), seed=int(cfg.seed), progress=True,
                              **kwargs)
    print(f"wrote {cfg.num_videos} videos and {path}")
    return path
