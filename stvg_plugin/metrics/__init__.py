"""The metric engine: every grounding protocol the project reports, vectorised and NaN-free.

``evaluate`` scores a whole benchmark; ``score_query`` gives one query's row with the same numbers
(used by the lmms-eval tasks and the FiftyOne operator). Protocol definitions: metrics.md; each
protocol is a :class:`ProtocolSpec` registered by its scorer module (:mod:`.protocols`, docs/EXTENDING.md).
"""

from stvg_plugin.metrics.boxes import BOX_FILLS, sanitize_box_array
from stvg_plugin.metrics.engine import (
    AUTO,
    PROTOCOLS,
    TASK_PROTOCOL,
    EvalResult,
    MetricsError,
    evaluate,
    metric_names,
    score_query,
)
from stvg_plugin.metrics.frames import tubedetr_universe
from stvg_plugin.metrics.protocols import (
    ProtocolSpec,
    ScoringContext,
    default_protocol,
    get_protocol,
    protocol_names,
    register_protocol,
    unregister_protocol,
)
from stvg_plugin.metrics.rec import parse_rec_answer, rec_iou
from stvg_plugin.metrics.temporal import parse_charades_answer, seconds_iou
from stvg_plugin.metrics.vstar import vstar_chain_scores, vstar_spatial_ious, vstar_summary, vstar_tiou
from stvg_plugin.metrics.vue_stg import vue_stg_scores

__all__ = [
    "AUTO",
    "BOX_FILLS",
    "PROTOCOLS",
    "TASK_PROTOCOL",
    "EvalResult",
    "MetricsError",
    "ProtocolSpec",
    "ScoringContext",
    "default_protocol",
    "evaluate",
    "get_protocol",
    "metric_names",
    "parse_charades_answer",
    "parse_rec_answer",
    "protocol_names",
    "rec_iou",
    "register_protocol",
    "sanitize_box_array",
    "score_query",
    "seconds_iou",
    "tubedetr_universe",
    "unregister_protocol",
    "vstar_chain_scores",
    "vstar_spatial_ious",
    "vstar_summary",
    "vstar_tiou",
    "vue_stg_scores",
]
