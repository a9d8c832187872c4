"""FiftyOne import under failure (issue 16, items 5-6), on a real mongod (``fo_fixtures``).

* ``import_benchmark(overwrite=True)`` builds the new dataset under a temporary name and swaps it in
  only when the import succeeded: a malformed file, or a failure half-way through adding samples,
  leaves the old dataset exactly as it was and no temporary dataset behind;
* an error from a file that is not one of our formats (a shadow-style password file) names the
  file and what was expected, never its content.
"""

from __future__ import annotations

import json

import pytest
from fo_fixtures import PLUGIN_URI, gt_digest, unique_name

from stvg_plugin.data import AnnotationError

SECRET = "root:$6$SECRETHASH:19000:0:99999:7:::"


def run_op(name: str, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(f"{PLUGIN_URI}/{name}", ctx={"params": params})


def _leftovers(fo) -> list[str]:
    return [n for n in fo.list_datasets() if "-stvg-import-" in n or "-stvg-replaced-" in n]


def test_failed_overwrite_keeps_the_old_dataset(fo_env, synth_ds, tmp_path) -> None:
    from fiftyone_plugin.io import import_benchmark

    name, before, count = synth_ds.name, gt_digest(synth_ds), len(synth_ds)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "a", "video": "v.mp4", "query": "x", "span_frames": [3, 1]}\n', encoding="utf-8")
    with pytest.raises(AnnotationError, match="span_frames"):
        import_benchmark("unified", bad, name, overwrite=True)
    assert fo_env.dataset_exists(name)
    kept = fo_env.load_dataset(name)
    assert len(kept) == count and gt_digest(kept) == before
    assert _leftovers(fo_env) == []


def test_failure_while_adding_samples_keeps_the_old_dataset(fo_env, synth_ds, synth_dir, monkeypatch) -> None:
    import fiftyone_plugin.importing as stvg_import
    import fiftyone_plugin.io as stvg_io

    name, before = synth_ds.name, gt_digest(synth_ds)
    calls = []
    real = stvg_import.gt_sample

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(stvg_import, "gt_sample", fail_on_second)
    with pytest.raises(OSError, match="injected"):
        stvg_io.import_benchmark("synth", synth_dir, name, overwrite=True, batch_size=1)
    assert len(calls) == 2
    assert gt_digest(fo_env.load_dataset(name)) == before
    assert _leftovers(fo_env) == []


def test_successful_overwrite_replaces_under_the_same_name(fo_env, synth_ds, tmp_path) -> None:
    from fiftyone_plugin.io import import_benchmark

    name = synth_ds.name
    video = next(iter(synth_ds.values("filepath")))
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"qid": "only", "video": video, "query": "x", "fps": 10, "num_frames": 20,
                               "width": 64, "height": 48, "span_frames": [1, 3]}) + "\n", encoding="utf-8")
    ds, result = import_benchmark("unified", one, name, overwrite=True)
    assert ds.name == name == result["dataset"] and len(fo_env.load_dataset(name)) == 1
    assert _leftovers(fo_env) == []
    with pytest.raises(Exception, match="exists"):
        import_benchmark("unified", one, name)  # still refused without overwrite


@pytest.mark.parametrize("benchmark", ["charades_sta", "unified", "hcstvg_v1", "vstar"])
def test_foreign_file_errors_never_quote_it(fo_env, tmp_path, benchmark) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SECRET + "\ndaemon:*:19000:0:99999:7:::\n", encoding="utf-8")
    from fiftyone.operators.executor import ExecutionError

    with pytest.raises(ExecutionError) as info:  # what the App shows: the operator's error
        run_op("import_benchmark", benchmark=benchmark, annotations=str(secret), dataset_name=unique_name("shadow"))
    shown = str(info.value)
    assert f"AnnotationError: {secret}" in shown  # names the file
    assert "SECRETHASH" not in shown and "daemon" not in shown
