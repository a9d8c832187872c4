"""Fault injection shared by ``tests/test_reliability_*.py``: a small synthetic set with broken videos mixed in.

Use it like ``fo_fixtures``: ``import fault_injection`` then ``faulty_set = fault_injection.faulty_set``
in the test module (``tests/`` is on ``sys.path`` under pytest's default import mode).

The set: 4 good synthetic videos (``generate_synthetic``), and one extra query per broken input of
:func:`stvg_plugin.synth.write_bad_videos` (zero-byte, truncated mid-stream, not a video, missing,
single frame, resolution change mid-stream), each a copy of a good query's GT pointing at the bad
file. ``clean.jsonl`` holds only the good queries, ``mixed.jsonl`` good + bad interleaved, so a
run over it must give the good qids exactly what a clean run gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stvg_plugin.synth import generate_synthetic, write_bad_videos

# which broken inputs must fail to read (``single_frame`` is a valid, if tiny, video)
UNREADABLE = ("zero_byte", "truncated", "not_a_video", "missing", "resolution_change")
# words each failure reason must contain (the reason, not only "cannot read")
REASONS = {
    "zero_byte": "empty file",
    "truncated": "",  # the decoders' wording varies; the path and a reason suffice
    "not_a_video": "not a readable video",
    "missing": "file not found",
    "resolution_change": "frame size changes mid-stream",
}


@dataclass
class FaultySet:
    root: Path
    clean: Path  # unified JSONL, good queries only
    mixed: Path  # the same plus one query per bad video, interleaved
    good_qids: list[str]
    bad: dict[str, tuple[str, Path]] = field(default_factory=dict)  # qid -> (bad kind, video path)

    def qid_of(self, kind: str) -> str:
        return next(q for q, (k, _) in self.bad.items() if k == kind)


def build_faulty_set(root: Path, num_videos: int = 4, seed: int = 1) -> FaultySet:
    root.mkdir(parents=True, exist_ok=True)
    annotations = generate_synthetic(root, num_videos=num_videos, seed=seed, duration_s=(3.0, 4.0),
                                     write_hcstvg_json=False)
    good = [json.loads(line) for line in annotations.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in good:  # absolute paths: the files may be copied elsewhere (lmms-eval reads <dir>/annotations.jsonl)
        row["video"] = str((root / row["video"]).resolve())
    bad_paths = write_bad_videos(root / "bad")
    bad: dict[str, tuple[str, Path]] = {}
    bad_rows = []
    for i, (kind, path) in enumerate(sorted(bad_paths.items())):
        row = dict(good[i % len(good)])
        row.update(qid=f"bad_{kind}", video=str(path), video_id=f"bad_{kind}")
        bad[row["qid"]] = (kind, path)
        bad_rows.append(row)
    mixed = []
    for i, row in enumerate(good):  # interleave: a bad video between good ones, not all at the end
        mixed.append(row)
        if i < len(bad_rows):
            mixed.append(bad_rows[i])
    mixed.extend(bad_rows[len(good):])
    clean_path, mixed_path = root / "clean.jsonl", root / "mixed.jsonl"
    clean_path.write_text("".join(json.dumps(r) + "\n" for r in good), encoding="utf-8")
    mixed_path.write_text("".join(json.dumps(r) + "\n" for r in mixed), encoding="utf-8")
    return FaultySet(root=root, clean=clean_path, mixed=mixed_path, good_qids=[r["qid"] for r in good], bad=bad)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def faulty_set(tmp_path_factory: pytest.TempPathFactory) -> FaultySet:
    """4 good synthetic videos + the 6 broken inputs as extra queries; read-only."""
    return build_faulty_set(tmp_path_factory.mktemp("faulty_set"))
