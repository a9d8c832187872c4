"""Import, ground, evaluate and compare as plain functions; the operators in ``operators.py`` only wrap these.

One module a job, re-exported here under the names callers have always used:

* :mod:`.importing` - a benchmark into a video dataset (``import_benchmark``, ``query_view``);
* :mod:`.grounding` - run a model over the samples (``load_model``, ``iter_ground``, ``ground_videos``);
* :mod:`.scoring` - score a run with the core metric engine (``evaluate_grounding``, ``compare_runs``);
* :mod:`.runs` - attach predictions made elsewhere (``attach_predictions``, ``import_lmms_eval_results``);
* :mod:`.fields` - the dataset's ``stvg`` info and a run's typed fields (``write_predictions``).

Every function validates its field names and refuses a write into ground truth *before* touching
the dataset.
"""

from __future__ import annotations

from .fields import INFO_KEY, _declare, write_predictions
from .grounding import ground_videos, iter_ground, load_model
from .importing import QUERY_VIEW, SYNTH, import_benchmark, query_view, resolve_benchmark
from .runs import attach_predictions, import_lmms_eval_results, read_lmms_samples
from .scoring import CATEGORIES, MIXED, categorize, compare_runs, evaluate_grounding

__all__ = [
    "CATEGORIES",
    "INFO_KEY",
    "MIXED",
    "QUERY_VIEW",
    "SYNTH",
    "_declare",
    "attach_predictions",
    "categorize",
    "compare_runs",
    "evaluate_grounding",
    "ground_videos",
    "import_benchmark",
    "import_lmms_eval_results",
    "iter_ground",
    "load_model",
    "query_view",
    "read_lmms_samples",
    "resolve_benchmark",
    "write_predictions",
]
