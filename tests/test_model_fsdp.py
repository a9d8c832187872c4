"""FSDP readiness (issue 13, item 3): accelerate's transformer-based auto-wrap finds the LLM decoder layer
and the vision encoder layer of both 7B backbones (built on the meta device: no memory)."""

from __future__ import annotations

from collections import Counter

import pytest

from stvg_plugin.models.presets import build_meta_model


@pytest.mark.parametrize(
    ("preset", "llm_layer", "llm_depth", "vision_layer", "vision_depth"),
    [
        ("spacevllm_7b", "Qwen2DecoderLayer", 28, "SiglipEncoderLayer", 26),
        ("spacevllm_qwen25vl_7b", "Qwen2_5_VLDecoderLayer", 28, "Qwen2_5_VLVisionBlock", 32),
    ],
)
def test_fsdp_auto_wrap_policy_wraps_llm_and_vision_layers(preset, llm_layer, llm_depth, vision_layer, vision_depth):
    from accelerate.utils import FullyShardedDataParallelPlugin

    model = build_meta_model(preset)
    assert {llm_layer, vision_layer, "QueryGuidedSpaceDecoder"} <= set(model._no_split_modules)
    plugin = FullyShardedDataParallelPlugin(auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)  # raises when a listed class is not in the model
    policy = plugin.auto_wrap_policy
    wrapped = Counter(
        type(m).__name__ for m in model.modules() if m is not model and policy(module=m, recurse=False, nonwrapped_numel=0)
    )
    assert wrapped[llm_layer] == llm_depth and wrapped[vision_layer] == vision_depth
    assert wrapped["QueryGuidedSpaceDecoder"] == 1
    # the units hold nearly all parameters: what stays in the root unit (embeddings, lm_head, norms,
    # projector, query table) is a small share of 8B
    unit_params = sum(p.numel() for m in model.modules() if type(m).__name__ in wrapped for p in m.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert 0.8 < unit_params / total < 1.0


_FSDP_WORKER = r'''
import functools, os, sys
import numpy as np, torch, torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from accelerate.utils.dataclasses import get_module_class_from_name
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP, StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from stvg_plugin.models.modeling_spacevllm import GroundingInputs
    from stvg_plugin.models.presets import build_tiny_model

    model = build_tiny_model("spacevllm_tiny").train()
    before = model.st_query_embed.weight.detach().clone()
    classes = {get_module_class_from_name(model, n) for n in model._no_split_modules}
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=classes)
    fsdp = FSDP(model, auto_wrap_policy=policy, device_id=torch.device("cpu"), use_orig_params=True)
    units = sorted(type(m.module).__name__ for m in fsdp.modules() if isinstance(m, FSDP))
    proc = model.processor
    gen = torch.Generator().manual_seed(rank)
    ins = GroundingInputs(pixel_inputs={"pixel_values_videos": torch.rand(1, 8, 3, 32, 32, generator=gen)},
                          timestamps=np.arange(8) / 2.0, instruction=proc.instruction("the red circle"),
                          answer_ids=proc.answer_ids("from 1.0 s to 2.0 s"))
    opt = torch.optim.AdamW(fsdp.parameters(), lr=1e-3)
    for _ in range(2):
        out = fsdp(ins)
        (out.loss + out.pred_boxes.sum()).backward()
        opt.step()
        opt.zero_grad()
    # offload_to_cpu=True segfaults in torch 2.13 when the devices are CPUs; the tensors are on CPU anyway
    with FSDP.state_dict_type(fsdp, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False)):
        state = fsdp.state_dict()
    if rank == 0:
        moved = not torch.equal(state["st_query_embed.weight"], before)
        print("RESULT", len(state), "x".join(map(str, state["st_query_embed.weight"].shape)), moved, ",".join(units), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, int(sys.argv[1])), nprocs=2)
'''


@pytest.mark.slow
def test_fsdp_smoke_on_cpu_gloo_two_processes(tmp_path) -> None:
    """torch FSDP (gloo, CPU, 2 processes) over the tiny preset with the model's wrap classes: 2 steps,
    then the full state dict gathered on rank 0. accelerate's FSDP plugin itself refuses CPU-only
    machines (it needs a CUDA/XPU/... device), so this drives torch's FSDP directly."""
    import os
    import socket
    import subprocess
    import sys

    from stvg_plugin.models.presets import build_tiny_model

    script = tmp_path / "fsdp_worker.py"
    script.write_text(_FSDP_WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), str(port)], capture_output=True, text=True, timeout=240, env=env)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    _, n_keys, _shape, moved, units = lines[0].split(" ", 4)
    expected_keys = len(build_tiny_model("spacevllm_tiny").state_dict())
    assert int(n_keys) == expected_keys and moved == "True"
    units = units.split(",")
    assert units.count("Qwen2DecoderLayer") == 2 and units.count("SiglipEncoderLayer") == 2
    assert "QueryGuidedSpaceDecoder" in units
