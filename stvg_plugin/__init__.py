"""stvg: spatio-temporal video grounding with video LLMs (shared model core).

The core never imports lmms-eval or FiftyOne; ``lmms_tasks`` and ``fiftyone_plugin`` import it.
"""

from stvg_plugin.data import (
    AnnotationError,
    GroundingPrediction,
    GroundingQuery,
    Span,
    StvgError,
    read_predictions,
    read_queries,
    write_jsonl,
    write_queries,
)

__version__ = "0.1.0"

__all__ = [
    "AnnotationError",
    "GroundingPrediction",
    "GroundingQuery",
    "Span",
    "StvgError",
    "read_predictions",
    "read_queries",
    "write_jsonl",
    "write_queries",
]
