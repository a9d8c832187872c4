"""The STVG evaluation as a FiftyOne evaluation run (``dataset.list_evaluations()``, ``load_evaluation_results``).

Why: FiftyOne knows an evaluation only through its run framework: a config class (the parameters,
stored with the run), a method class (which fields the run wrote, how to delete them) and a results
class (stored in the database, reloaded by key). :func:`fiftyone_plugin.io.evaluate_grounding` scores
with the stvg metric engine and records the run through these classes, so::

    ds.list_evaluations()                      # [..., "pred"]
    res = ds.load_evaluation_results("pred")   # StvgEvaluationResults
    res.summary["m_vIoU"]; res.per_query[0]["tIoU"]; res.by_qid()["q1"]["category"]
    ds.delete_evaluation("pred")               # drops pred_tIoU / pred_vIoU / pred_category, the span
                                               # attributes and the frame-box sub-run pred_box

The App's Model Evaluation panel lists every evaluation that has results, so it lists this one; its
detail pages are implemented only for the ``classification`` / ``detection`` / ``segmentation`` types
(they call ``results.metrics()``, confusion matrices, per-class tables), so opening an STVG run there
shows FiftyOne's "unsupported" notice with the run's config. The frame-box sub-run ``<key>_box`` is a
regular detection evaluation, which the panel shows in full.
"""

from __future__ import annotations

from typing import Any

import fiftyone.core.evaluation as foe

from stvg_plugin.metrics import default_protocol

METHOD = "stvg"
SAMPLE_METRICS = ("tIoU", "vIoU", "category")


def sample_fields(key: str) -> list[str]:
    """Sample-level fields a run with key ``key`` writes."""
    return [f"{key}_{m}" for m in SAMPLE_METRICS]


def box_key(key: str) -> str:
    """Key of the FiftyOne frame-box detection evaluation run alongside STVG run ``key``."""
    return f"{key}_box"


class StvgEvaluationConfig(foe.EvaluationMethodConfig):
    """Parameters of one STVG evaluation: what was compared and how it was scored."""

    def __init__(
        self,
        pred_field: str,
        gt_field: str = "gt",
        protocol: str | None = None,
        tiou_thresh: float = 0.5,
        viou_thresh: float = 0.3,
        box_eval: bool = True,
        box_iou: float = 0.5,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.pred_field = pred_field
        self.gt_field = gt_field
        self.protocol = protocol or default_protocol()
        self.tiou_thresh = tiou_thresh
        self.viou_thresh = viou_thresh
        self.box_eval = box_eval
        self.box_iou = box_iou

    @property
    def method(self) -> str:
        return METHOD


class StvgEvaluation(foe.EvaluationMethod):
    """Knows the fields of a run, so FiftyOne can list, rename-check and delete them."""

    def _span_attr_fields(self, samples, key: str) -> list[str]:
        schema = samples.get_field_schema(flat=True)
        out = []
        for spans in (f"{self.config.gt_field}_spans", f"{self.config.pred_field}_spans"):
            for metric in SAMPLE_METRICS:
                path = f"{spans}.detections.{key}_{metric}"
                if path in schema:
                    out.append(path)
        return out

    def get_fields(self, samples, key: str) -> list[str]:
        schema = samples.get_field_schema()
        return [f for f in sample_fields(key) if f in schema] + self._span_attr_fields(samples, key)

    def cleanup(self, samples, key: str) -> None:
        """Delete what the run wrote: sample fields, per-query span attributes, the box sub-run, its info entry."""
        from fiftyone_plugin.io import INFO_KEY

        dataset = samples._dataset
        for path in self._span_attr_fields(dataset, key):
            dataset.delete_sample_field(path)
        schema = dataset.get_field_schema()
        for field in sample_fields(key):
            if field in schema:
                dataset.delete_sample_field(field)
        if dataset.has_evaluation(box_key(key)):
            dataset.delete_evaluation(box_key(key))
        info = dict(dataset.info.get(INFO_KEY) or {})
        evaluations = dict(info.get("evaluations") or {})
        if evaluations.pop(key, None) is not None:
            info["evaluations"] = evaluations
            dataset.info[INFO_KEY] = info
            dataset.save()


class StvgEvaluationResults(foe.EvaluationResults):
    """What :func:`evaluate_grounding` computed, stored with the run.

    ``summary``: the metric engine's summary (``m_tIoU``, ``m_vIoU``, ``vIoU@t``, counts);
    ``per_query``: one row per query (``qid``, ``tIoU``, ``vIoU``, ``category``, ...);
    ``categories``: queries per category; ``box``: the frame-box sub-run's key and TP/FP/FN.
    """

    def __init__(self, samples, config, key, summary=None, per_query=None, categories=None, box=None, backend=None):
        super().__init__(samples, config, key, backend=backend)
        self.summary = dict(summary or {})
        self.per_query = list(per_query or [])
        self.categories = dict(categories or {})
        self.box = dict(box or {})

    def attributes(self) -> list[str]:
        return ["cls", "summary", "per_query", "categories", "box"]

    def by_qid(self) -> dict[str, dict]:
        return {str(row["qid"]): row for row in self.per_query}

    def get_meta(self) -> dict:
        keys = ("m_tIoU", "m_vIoU", "num_queries")
        return {k: self.summary[k] for k in keys if k in self.summary}

    @classmethod
    def _from_dict(cls, d, samples, config, key):
        return cls(samples, config, key, summary=d.get("summary"), per_query=d.get("per_query"),
                   categories=d.get("categories"), box=d.get("box"))
