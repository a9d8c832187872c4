"""The registries are the one list of models, benchmarks and protocols: the files users name by hand
(``conf/model/*.yaml``, ``conf/data/*.yaml``, the lmms-eval task YAMLs) must agree with them."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from stvg_plugin.adapters import BENCHMARKS, benchmark_specs, default_protocol, get_benchmark
from stvg_plugin.metrics import (
    PROTOCOLS,
    TASK_PROTOCOL,
    MetricsError,
    evaluate,
    get_protocol,
    protocol_names,
)
from stvg_plugin.metrics import default_protocol as task_default_protocol
from stvg_plugin.models.families import family_names
from stvg_plugin.models.presets import PRESET_ALIASES, PRESETS, resolve_spec

ROOT = Path(__file__).resolve().parents[1]
_ENV = re.compile(r"^\$\{oc\.env:(\w+),([^}]*)\}(.*)$")


def _conf(group: str) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "conf" / group).glob("*.yaml"))}


def _env(value: object) -> tuple[str | None, str]:
    """``${oc.env:VAR,default}rest`` -> ``(VAR, rest)``; a plain value -> ``(None, str(value))``."""
    match = _ENV.match(str(value)) if value is not None else None
    return (match.group(1), match.group(3)) if match else (None, str(value))


# --------------------------------------------------------------------------- models


def test_every_spacevllm_conf_is_the_preset_of_its_name_and_every_preset_has_one() -> None:
    spacevllm = {name: cfg for name, cfg in _conf("model").items() if cfg.get("type") == "spacevllm"}
    assert {name: cfg["preset"] for name, cfg in spacevllm.items()} == {name: name for name in spacevllm}
    assert sorted(PRESETS) == sorted(spacevllm)
    for name, cfg in spacevllm.items():  # a value a conf sets restates its preset's, never contradicts it
        preset = resolve_spec(name)
        assert {k: v for k, v in cfg.items() if v is not None and "${" not in str(v) and k in preset} == {
            k: preset[k] for k, v in cfg.items() if v is not None and "${" not in str(v) and k in preset}, name


def test_every_prompted_conf_names_a_registered_family_and_every_family_has_a_tiny_one() -> None:
    prompted = {name: cfg for name, cfg in _conf("model").items() if cfg.get("type") == "prompted"}
    for name, cfg in prompted.items():
        if name == "prompted":  # the generic one: the family comes from the checkpoint
            assert cfg["family"] is None
            continue
        assert cfg["family"] in family_names(), name
        assert re.fullmatch(rf"prompted_{cfg['family']}_(tiny|\d+b)", name), name
        assert bool(cfg.get("tiny")) == name.endswith("_tiny"), name
    assert {f"prompted_{family}_tiny" for family in family_names()} <= set(prompted)


def test_old_preset_names_resolve_to_the_renamed_presets() -> None:
    for old, new in PRESET_ALIASES.items():
        assert old in PRESETS and old not in list(PRESETS)
        assert {k: v for k, v in resolve_spec(old).items() if k != "preset"} == {
            k: v for k, v in resolve_spec(new).items() if k != "preset"
        }
    with pytest.raises(ValueError, match="unknown model preset 'spacevllm_13b'"):
        resolve_spec("spacevllm_13b")


# --------------------------------------------------------------------------- benchmarks


def test_every_data_conf_matches_its_benchmark_source_and_every_source_has_one() -> None:
    sources = {src.name: (spec, src) for spec in benchmark_specs() for src in spec.sources}
    confs = _conf("data")
    assert sorted(confs) == sorted(sources)
    for name, cfg in confs.items():
        spec, src = sources[name]
        assert cfg["benchmark"] == spec.name, name
        var, rest = _env(cfg["annotations"])
        assert var == src.annotations_env, name
        assert rest == (f"/{src.annotations_file}" if src.annotations_file else ""), name
        assert _env(cfg["video_root"])[0] == src.videos_env, name
        options = {key: _env(value)[0] for key, value in (cfg.get("benchmark_kwargs") or {}).items()}
        assert options == dict(src.options_env), name


def test_lmms_task_yamls_are_the_registered_tasks() -> None:
    from lmms_tasks.common import TASK_GROUPS, TASK_SOURCES

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    tasks, groups = {}, {}
    for path in sorted((ROOT / "lmms_tasks").glob("*/stvg_*.yaml")):
        cfg = yaml.load(path.read_text(), Loader=_Loader)
        if "group" in cfg:
            groups[cfg["group"]] = tuple(cfg["task"])
        else:
            tasks[cfg["task"]] = cfg
    assert sorted(tasks) == sorted(TASK_SOURCES)
    assert groups == TASK_GROUPS
    import lmms_tasks.common

    for task, src in TASK_SOURCES.items():
        assert src.benchmark in BENCHMARKS and src.source in get_benchmark(src.benchmark).sources, task
        module, function = tasks[task]["process_docs"].rsplit(".", 1)
        process_docs = getattr(importlib.import_module(module), function)
        assert process_docs.func is lmms_tasks.common.load_docs and process_docs.args == (task,), task
    with pytest.raises(AttributeError, match="process_docs_kinetics"):
        lmms_tasks.common.process_docs_kinetics  # noqa: B018


def test_benchmark_default_protocols_come_from_the_task_default() -> None:
    for spec in benchmark_specs():
        expected = spec.protocol or task_default_protocol(spec.task)
        assert default_protocol(spec.name) == expected and expected in protocol_names()
    assert default_protocol("charades_sta") == task_default_protocol("tvg") == "tvg"


# --------------------------------------------------------------------------- protocols


def test_protocol_registry_lists_the_builtins_in_their_documented_order() -> None:
    assert PROTOCOLS == ("tubedetr", "official_hcstvg", "stcat", "cg_stvg", "llava_next_stvg", "vue_stg", "vstar",
                         "tvg", "rec")
    assert protocol_names()[: len(PROTOCOLS)] == PROTOCOLS
    assert TASK_PROTOCOL == {"stvg": "tubedetr", "tvg": "tvg", "rec": "rec"}
    assert task_default_protocol() == task_default_protocol("no_such_task") == "tubedetr"
    assert get_protocol("vstar").tasks == ("stvg", "tvg")


def test_unknown_protocol_is_one_clear_error() -> None:
    with pytest.raises(MetricsError, match=r"unknown protocol 'tubedeter'; choose one of \('tubedetr'"):
        evaluate([], [], protocol="tubedeter")
    with pytest.raises(MetricsError, match="unknown protocol"):
        get_protocol("")


def test_a_taken_name_is_refused_and_the_same_spec_again_is_a_no_op() -> None:
    from stvg_plugin.adapters import BenchmarkError, register_benchmark
    from stvg_plugin.metrics import ProtocolSpec, register_protocol

    tubedetr = get_protocol("tubedetr")
    assert register_protocol(tubedetr) is tubedetr and protocol_names().count("tubedetr") == 1
    with pytest.raises(MetricsError, match="protocol 'tubedetr' is already registered"):
        register_protocol(ProtocolSpec("tubedetr", tubedetr.score, tubedetr.metric_names))
    with pytest.raises(BenchmarkError, match="benchmark 'vstar' is already registered"):
        register_benchmark(replace(get_benchmark("vstar"), protocol="tvg"))
    assert default_protocol("vstar") == "vstar"


@pytest.mark.parametrize("first", ["stvg_plugin.metrics.rec", "stvg_plugin.adapters.unified",
                                   "stvg_plugin.models.families.llava_onevision"])
def test_listing_order_does_not_depend_on_what_was_imported_first(first: str) -> None:
    code = (f"import {first}\n"
            "from stvg_plugin.metrics import protocol_names\n"
            "from stvg_plugin.adapters import benchmark_names\n"
            "from stvg_plugin.models.families import family_names\n"
            "print([list(protocol_names()), list(benchmark_names()), list(family_names())])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == str([list(PROTOCOLS), list(BENCHMARKS), list(family_names())])
    assert list(family_names()) == ["qwen2_5_vl", "qwen3_vl", "internvl", "llava_onevision"]
