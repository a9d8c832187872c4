"""Training loop on accelerate: the same code runs on 2 CPU cores, one GPU, or DDP/FSDP/DeepSpeed.

Multi-device behaviour comes from accelerate's own config (``accelerate launch``), never from code
here. One micro-step = ``batch_size`` examples in one batched forward (the model core pads their
sequences; frame counts may differ across tasks); ``grad_accum`` micro-steps make one optimizer
step. Each process draws its own examples from the deterministic stream (``TrainData``), so a
resumed run repeats exactly the data, losses and updates of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stvg_plugin.data import AnnotationError, StvgError, append_jsonl, atomic_write_text, decode_json_line
from stvg_plugin.models.losses import DEFAULT_LOSS_WEIGHTS, LOSS_KEYS
from stvg_plugin.training import checkpoints as ckpt
from stvg_plugin.training.dataset import TrainData
from stvg_plugin.training.parts import has_lora, plain_state_dict
from stvg_plugin.util.progress import progress_bar
from stvg_plugin.util.threads import ThreadGovernor, set_torch_threads

log = logging.getLogger(__name__)

LOG_NAME = "train_log.jsonl"


class NonFiniteLossError(StvgError):
    """A NaN/inf loss or gradient: the run stops; the last checkpoint on disk is untouched."""


@dataclass
class TrainerConfig:
    """The ``trainer`` config group (``conf/trainer/*.yaml``); unknown keys are an error."""

    max_steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_accum: int = 1
    batch_size: int = 1
    max_grad_norm: float = 1.0
    save_every: int = 0
    keep_last: int = 2
    seed: int = 0
    num_threads: int | None = None  # None: the cores this process may use (util/threads.py)
    # on CPU, run on fewer threads while other processes use this process's cores (util/threads.ThreadGovernor)
    adapt_threads: bool = True
    # AdamW's fused kernel (one pass over all parameters) where torch has one for them (CPU, CUDA; not under
    # DeepSpeed, which brings its own optimizer step); false = torch's per-parameter loop
    fused_optimizer: bool = True
    mixed_precision: str = "auto"
    save_dtype: str = "auto"
    device: str = "auto"
    cache_frames: bool | None = None
    cache_max_bytes: int = 2 * 1024**3
    num_workers: int = 2
    video_backend: str = "auto"
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TrainerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise StvgError(f"unknown trainer settings {sorted(unknown)}; known: {sorted(names)}")
        cfg = cls(**{k: v for k, v in raw.items() if v is not None or k == "num_threads"})
        bad_w = set(cfg.loss_weights) - set(LOSS_KEYS)
        if bad_w:
            raise StvgError(f"trainer.loss_weights has unknown keys {sorted(bad_w)}; known: {LOSS_KEYS}")
        cfg.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **dict(cfg.loss_weights)}
        if cfg.max_steps < 1 or cfg.grad_accum < 1 or cfg.batch_size < 1:
            raise StvgError("trainer.max_steps, trainer.grad_accum and trainer.batch_size must be >= 1")
        return cfg


def mixed_precision_mode(setting: str) -> str:
    """``auto`` -> bf16 where the GPU supports it, else full precision (CPU bf16 autocast is slow)."""
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def prepare_master_weights(model: torch.nn.Module, mode: str, *, uniform: bool = False) -> dict[str, int]:
    """fp32 master weights for every trainable parameter, before the optimizer is built.

    Why: a 7B model is loaded in bf16 (``dtype`` of the real presets). AdamW on bf16 weights loses
    every update smaller than half a bf16 step (2^-8 relative): a weight equal to 1.0 never moves at
    lr 1e-4, so norm layers freeze and most small updates round away. So, as accelerate's mixed
    precision expects, trainable parameters are held in fp32 (hence AdamW's state is fp32 too) and the
    forward runs under accelerate's bf16 autocast (``mixed_precision=bf16``). Frozen parameters stay
    in the load dtype (a frozen vision tower or base LLM under LoRA costs half the memory in bf16;
    autocast computes in bf16 anyway). ``mode == "no"`` (full precision) or ``uniform`` (FSDP: a flat
    parameter needs one dtype; FSDP's own mixed precision then computes in bf16) casts everything to
    fp32. Returns the count of parameters per dtype after the cast.
    """
    if mode == "no" or uniform:
        model.float()
    else:
        for p in model.parameters():
            if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
                p.data = p.data.float()
    counts: dict[str, int] = {}
    for p in model.parameters():
        key = str(p.dtype).removeprefix("torch.")
        counts[key] = counts.get(key, 0) + p.numel()
    return counts


def save_dtype(setting: str, mode: str) -> torch.dtype:
    """The dtype final/checkpoint ``model/`` folders hold: ``auto`` = bf16 after bf16 training, else fp32."""
    if setting == "auto":
        return torch.bfloat16 if mode == "bf16" else torch.float32
    if setting not in ("float32", "bfloat16", "float16"):
        raise StvgError(f"trainer.save_dtype must be auto, float32, bfloat16 or float16, got {setting!r}")
    return getattr(torch, setting)


def can_fuse_adamw(params: list[torch.nn.Parameter], accelerator) -> bool:
    """Whether torch's fused AdamW takes these parameters' step (floating point, on CPU or CUDA, no DeepSpeed).

    Why: on CPU torch's default AdamW loops over the parameters, several operator calls each: clipping and
    the step take 6.8-8.6 ms for the demo model's 136 parameter tensors, 2.3-2.5 ms fused (BENCHMARKS.md
    "fused optimizer"; the whole tiny step gains only ~1.04x). transformers' Trainer defaults to the fused
    kernel too (``adamw_torch_fused`` for torch >= 2.8). It computes the same update; a checkpoint's optimizer
    state loads into either.
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return False
    device_type = accelerator.device.type
    return device_type in ("cpu", "cuda") and all(p.is_floating_point() and p.device.type in ("cpu", device_type)
                                                   for p in params)


class Trainer:
    """Optimizer, schedule, checkpoints, resume and the log around one model and its data."""

    def __init__(self, model: torch.nn.Module, data: TrainData, cfg: TrainerConfig, output_dir: str | Path):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed
        from transformers import get_cosine_schedule_with_warmup

        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.data = data
        threads = set_torch_threads(cfg.num_threads)
        self.mode = mixed_precision_mode(cfg.mixed_precision)
        self.save_dtype = save_dtype(cfg.save_dtype, self.mode)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.grad_accum,
            mixed_precision=self.mode,
            cpu=cfg.device == "cpu",
            # rec examples have no answer (no LM loss) and box_head=text skips decoder boxes: DDP must
            # tolerate parameters without a gradient in some steps
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        set_seed(cfg.seed)
        on_cpu = self.accelerator.device.type == "cpu"
        self.governor = ThreadGovernor(threads if cfg.adapt_threads and on_cpu else 1)
        from accelerate.utils import DistributedType

        uniform = self.accelerator.distributed_type == DistributedType.FSDP
        self.param_dtypes = prepare_master_weights(model, self.mode, uniform=uniform)
        log.info("parameters per dtype after the master-weight cast: %s", self.param_dtypes)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise StvgError("no trainable parameters (check train_parts)")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=cfg.fused_optimizer and can_fuse_adamw(params, self.accelerator))
        n = self.accelerator.num_processes  # the prepared scheduler steps once per process
        scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps * n, cfg.max_steps * n)
        model.train()
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.step = 0
        self.last_checkpoint: Path | None = None

    @property
    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, directory: str | Path) -> Path:
        """The model core's format (safetensors + config + processor); LoRA folded in.

        Every process must call it: the state dict is gathered through the accelerator (under FSDP /
        DeepSpeed ZeRO-3 each process holds a shard only), then the main process writes it in
        ``trainer.save_dtype`` (the space decoder stays fp32); ``config.json``'s ``dtype`` says which.
        """
        directory = Path(directory)
        state = self.accelerator.get_state_dict(self.model)
        if self.accelerator.is_main_process:
            model = self.unwrapped
            if has_lora(model):
                state = plain_state_dict(model, state)
            state = {k: v.to(self.save_dtype) if v.is_floating_point() and not k.startswith("space_decoder.") else v
                     for k, v in state.items()}
            model.save_pretrained(directory, state_dict=state, dtype=self.save_dtype)
        return directory

    def save_checkpoint(self) -> Path:
        """Stage model + accelerate state in a temporary folder, then publish it atomically."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.staging_dir(self.output_dir, self.step)
        acc.wait_for_everyone()
        tmp = ckpt.checkpoint_root(self.output_dir) / f".tmp_{ckpt.checkpoint_name(self.step)}"
        acc.save_state(str(tmp / "state"))
        acc.wait_for_everyone()
        self.save_model(tmp / "model")
        if acc.is_main_process:
            state = {"step": self.step, "max_steps": self.cfg.max_steps, "data": self.data.stats.to_json()}
            ckpt.publish(tmp, self.output_dir, self.step, state, self.cfg.keep_last)
        acc.wait_for_everyone()
        self.last_checkpoint = ckpt.checkpoint_root(self.output_dir) / ckpt.checkpoint_name(self.step)
        return self.last_checkpoint

    def resume(self, path: Path) -> None:
        """Load optimizer/scheduler/RNG/weights from a checkpoint and continue after its step."""
        state = ckpt.read_state(path)
        try:
            self.accelerator.load_state(str(path / "state"))
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
            # a refused pickle (torch's weights_only loader), a truncated or altered file: one line, no traceback
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise StvgError(f"{path / 'state'}: cannot restore the optimizer/scheduler/RNG state "
                            f"({type(exc).__name__}: {first}); resume from another checkpoint or pass resume=false") \
                from None
        self.step = int(state["step"])
        self.last_checkpoint = path
        self._truncate_log(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    def start_fresh(self) -> None:
        """A fresh run in a used folder starts a fresh log (a resumed one keeps its earlier part)."""
        self._truncate_log(0)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines after ``step`` (they came from the interrupted part of a previous run)."""
        path = self.output_dir / LOG_NAME
        if not path.exists() or not self.accelerator.is_main_process:
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                if decode_json_line(line)["step"] <= step:
                    keep.append(line)
            except (AnnotationError, KeyError, TypeError):
                continue
        atomic_write_text(path, "".join(keep))

    # ------------------------------------------------------------------ loop
    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            where = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                "; no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite {what} ({value}) at step {self.step + 1}: training stopped{where}")

    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches of ``batch_size`` examples; returns the mean losses.

        A micro-batch goes through the model in one batched forward (its ``loss`` is the mean of its
        examples' losses), so ``batch_size=8, grad_accum=1`` takes the same step on the same examples
        as ``batch_size=1, grad_accum=8`` (to float rounding), faster (bench/bench_train_step.py).
        """
        acc, cfg = self.accelerator, self.cfg
        global_step = self.step * acc.num_processes + acc.process_index
        examples = self.data.examples(global_step, cfg.grad_accum * cfg.batch_size)
        sums = dict.fromkeys((*LOSS_KEYS, "total"), 0.0)
        grad_norm = None
        for start in range(0, len(examples), cfg.batch_size):
            batch = examples[start : start + cfg.batch_size]
            with acc.accumulate(self.model):
                out = self.model([ex.inputs for ex in batch], loss_weights=cfg.loss_weights)
                per_example = {k: v.detach().float().cpu() for k, v in out.example_losses.items()}
                for k, v in per_example.items():
                    sums[k] += float(v.sum()) / len(examples)
                for ex, total in zip(batch, per_example["total"].tolist()):
                    self._check_finite(total, f"loss (example {ex.key})")
                acc.backward(out.loss)
                if acc.sync_gradients and cfg.max_grad_norm > 0:
                    grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
                    self._check_finite(grad_norm, "gradient norm")
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
        self.step += 1
        row = {"step": self.step, "lr": self.scheduler.get_last_lr()[0], **{f"loss_{k}": v for k, v in sums.items()}}
        row["loss"] = row.pop("loss_total")
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        return row

    def train(self, until: int | None = None) -> dict[str, Any]:
        """Run to ``max_steps`` (or stop after step ``until``); checkpoints every ``save_every`` steps."""
        acc, cfg = self.accelerator, self.cfg
        stop = min(cfg.max_steps, until) if until is not None else cfg.max_steps
        self.output_dir.mkdir(parents=True, exist_ok=True)
        bar = progress_bar(total=cfg.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not acc.is_main_process)
        t0 = time.perf_counter()
        start_step = self.step
        last: dict[str, float] = {}
        with (self.output_dir / LOG_NAME).open("a", encoding="utf-8") as fh:
            try:
                while self.step < stop:
                    with self.governor.measure():
                        last = self.train_step()
                    last["time_s"] = round(time.perf_counter() - t0, 3)
                    if acc.is_main_process:
                        append_jsonl(fh, last)
                    bar.update(1)
                    # refresh=False: the bar's own rate limit draws it (a postfix that refreshes wrote
                    # one record per step into a log file: 5 200 in the demo's training log)
                    bar.set_postfix(loss=f"{last['loss']:.3f}", rel=f"{last['loss_relevance']:.3f}",
                                    giou=f"{last['loss_giou']:.3f}", refresh=False)
                    if cfg.save_every > 0 and self.step % cfg.save_every == 0 and self.step < cfg.max_steps:
                        self.save_checkpoint()
            finally:
                bar.close()
        return {"step": self.step, "steps_run": self.step - start_step,
                "wall_s": round(time.perf_counter() - t0, 2), "last": last}

    def save_final(self) -> Path:
        """``output_dir/final/``: the trained model, loadable by ``stvg predict checkpoint=...``."""
        self.accelerator.wait_for_everyone()
        final = self.output_dir / "final"
        tmp = self.output_dir / ".tmp_final"  # written aside and renamed: a kill never leaves a half final/
        if self.accelerator.is_main_process:
            ckpt.fresh_dir(tmp)
        self.accelerator.wait_for_everyone()
        self.save_model(tmp)  # every process: the state dict is gathered through the accelerator
        if self.accelerator.is_main_process:
            ckpt.replace_dir(tmp, final)
        self.accelerator.wait_for_everyone()
        return final
