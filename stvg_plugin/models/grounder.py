"""``Grounder``: videos + referring queries -> ``GroundingPrediction`` (encode each video once).

``ground`` is the strict API (bad input raises); ``predict`` is the batch API used by the CLI,
lmms-eval and FiftyOne: it groups queries by video, decodes videos ahead of the model, and turns
an unreadable video or an empty query into predictions with ``error`` set instead of raising.
Both answer a video's queries in batches of ``query_batch_size`` against its one encoded prefix
(:meth:`Grounder.ground_prefix_many`); results equal grounding them one by one. The model returns
tensors and token ids (:meth:`SpaceVLLMForGrounding.answer_queries`); the predictions are built here
(:func:`predictions_from_answers`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from stvg_plugin.data import GroundingPrediction, GroundingQuery
from stvg_plugin.models.decoding import build_prediction
from stvg_plugin.models.modeling_spacevllm import PrefixAnswers, SpaceVLLMForGrounding, VideoPrefix
from stvg_plugin.util.progress import progress_bar
from stvg_plugin.video import PrefetchLoader, SampledVideo, VideoReadError, sample_video

log = logging.getLogger(__name__)


class Grounder:
    """A loaded SpaceVLLM-style model + its frame sampling policy."""

    def __init__(
        self,
        model: SpaceVLLMForGrounding,
        *,
        video_backend: str = "auto",
        prefetch_workers: int = 1,
        query_batch_size: int = 16,
    ):
        self.model = model.eval()
        self.video_backend = video_backend
        self.prefetch_workers = prefetch_workers
        #: queries of one video decoded together; each row holds its own copy of the prefix KV cache
        #: (7B, 64 frames: ~0.75 GB per row in bf16), so lower it on a small GPU
        self.query_batch_size = max(1, int(query_batch_size))

    @property
    def num_frames(self) -> int:
        return int(self.model.config.num_frames)

    def sample(self, path: str) -> SampledVideo:
        """Uniformly sample ``num_frames`` frames (a longer video is sampled down over its length)."""
        size = tuple(self.model.config.frame_size) if self.model.config.frame_size else None
        return sample_video(path, num_frames=self.num_frames, size=size, backend=self.video_backend)

    def encode(self, video: str | SampledVideo) -> VideoPrefix:
        sampled = video if isinstance(video, SampledVideo) else self.sample(str(video))
        return self.model.encode_video(sampled)

    def ground_prefix_many(
        self, prefix: VideoPrefix, queries: Sequence[str], qids: Sequence[str] | None = None
    ) -> list[GroundingPrediction]:
        """Answer several queries against one cached prefix in one batch (the prefix is left unchanged):
        the model's :meth:`~SpaceVLLMForGrounding.answer_queries` tensors, turned into predictions.

        Raises ``ValueError`` for an empty query or a qid count that differs (before any work); odd
        generated text never raises (``parse_failed``).
        """
        qids = [""] * len(queries) if qids is None else list(qids)
        if len(qids) != len(queries):
            raise ValueError(f"{len(qids)} qids for {len(queries)} queries")
        answers = self.model.answer_queries(prefix, queries)
        return predictions_from_answers(self.model, prefix, answers, qids)

    def ground_prefix(self, prefix: VideoPrefix, query: str, qid: str = "") -> GroundingPrediction:
        """One query against a cached prefix (a batch of one)."""
        return self.ground_prefix_many(prefix, [query], [qid])[0]

    def _ground_batches(self, prefix: VideoPrefix, queries: Sequence[str], qids: Sequence[str]):
        n = self.query_batch_size
        for i in range(0, len(queries), n):
            yield from self.ground_prefix_many(prefix, queries[i : i + n], qids[i : i + n])

    def ground(
        self, video: str | SampledVideo, queries: Sequence[str], qids: Sequence[str] | None = None
    ) -> list[GroundingPrediction]:
        """Encode ``video`` once and answer the queries in batches against the cached prefix.

        Raises ``ValueError`` for an empty query (checked before any work) and ``VideoReadError``
        for an unreadable video.
        """
        if isinstance(queries, str):
            raise TypeError("queries must be a sequence of strings, not one string")
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"query {i} is empty")
        qids = list(qids) if qids is not None else [str(i) for i in range(len(queries))]
        if len(qids) != len(queries):
            raise ValueError(f"{len(qids)} qids for {len(queries)} queries")
        prefix = self.encode(video)
        return list(self._ground_batches(prefix, list(queries), qids))

    def predict(self, queries: Sequence[GroundingQuery], progress: bool = True) -> Iterator[GroundingPrediction]:
        """One prediction per query, grouped by video (videos in first-appearance order)."""
        groups: dict[str, list[GroundingQuery]] = {}
        for q in queries:
            groups.setdefault(q.video, []).append(q)
        bar = progress_bar(total=len(queries), desc="grounding", unit="query", disable=not progress)
        loader = PrefetchLoader(list(groups), self.sample, num_workers=self.prefetch_workers)
        try:
            for video, sampled in loader:
                for pred in self._predict_video(groups[video], sampled):
                    bar.update(1)
                    yield pred
        finally:
            bar.close()

    def _predict_video(
        self, group: list[GroundingQuery], sampled: SampledVideo | VideoReadError
    ) -> Iterator[GroundingPrediction]:
        if isinstance(sampled, VideoReadError):
            log.warning("skipping %d queries: %s", len(group), sampled)
            for q in group:
                yield GroundingPrediction(qid=q.qid, error=str(sampled))
            return
        # Any failure on one video (an odd frame size, a model error) becomes that video's error
        # predictions, counted and named by ``stvg evaluate``: the rest of the run is kept.
        try:
            prefix = self.model.encode_video(sampled)
        except Exception as exc:
            for q in group:
                yield GroundingPrediction(qid=q.qid, error=f"cannot encode video {group[0].video}: {exc}")
            return
        valid = [q for q in group if isinstance(q.query, str) and q.query.strip()]
        answers: dict[int, GroundingPrediction] = {}
        try:
            for q, pred in zip(valid, self._ground_batches(prefix, [q.query for q in valid], [q.qid for q in valid])):
                answers[id(q)] = pred
        except Exception:  # find which query failed: one by one
            for q in valid:
                if id(q) in answers:
                    continue
                try:
                    answers[id(q)] = self.ground_prefix(prefix, q.query, q.qid)
                except Exception as exc:
                    log.warning("query %s failed: %s: %s", q.qid, type(exc).__name__, exc)
                    answers[id(q)] = GroundingPrediction(qid=q.qid, error=f"{type(exc).__name__}: {exc}")
        for q in group:
            pred = answers.get(id(q)) or GroundingPrediction(qid=q.qid, error="empty query text")
            yield to_annotation_space(pred, q, sampled.info.width, sampled.info.height)


def predictions_from_answers(
    model: SpaceVLLMForGrounding, prefix: VideoPrefix, answers: PrefixAnswers, qids: Sequence[str]
) -> list[GroundingPrediction]:
    """The model's answers to queries on one video as predictions in the video's frames and pixels.

    The answer text is decoded and its span parsed (seconds -> original frames); the span comes from
    the text, the relevance logits or both (``config.span_source``); the boxes are the space decoder's,
    or with ``box_head="text"`` the ones the text lists (:func:`~stvg_plugin.models.decoding.build_prediction`).
    """
    proc = model._require_processor()
    cfg = model.config
    box_text = cfg.box_head == "text"
    preds = []
    for k, tokens in enumerate(answers.answer_ids):
        text = proc.decode(tokens)
        preds.append(
            build_prediction(
                qids[k],
                text,
                prefix.geometry,
                span_source=cfg.span_source,
                decoder_boxes_cxcywh=answers.boxes[k].numpy(),
                relevance_logits=answers.relevance_logits[k].numpy(),
                text_boxes_xyxy=proc.parse_boxes(text, len(prefix.geometry.indices)) if box_text else None,
                threshold=cfg.relevance_threshold,
                sub_frame=cfg.relevance_target == "coverage",
            )
        )
    return preds


def to_annotation_space(pred: GroundingPrediction, q: GroundingQuery, width: int, height: int) -> GroundingPrediction:
    """Boxes predicted in the decoded video's pixels, rescaled to the annotation's ``width`` x ``height``.

    The ground truth is in the annotation's pixel space; a video re-encoded at another size (or an
    annotation with the wrong size) would otherwise be scored in two spaces at once. The sizes
    used are recorded in ``extra["boxes_rescaled"]``.
    """
    if not pred.boxes or q.width <= 0 or q.height <= 0 or (q.width, q.height) == (width, height):
        return pred
    sx, sy = q.width / max(width, 1), q.height / max(height, 1)
    pred.boxes = {f: [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for f, b in pred.boxes.items()}
    pred.extra = {**pred.extra, "boxes_rescaled": {"video_size": [width, height], "annotation_size": [q.width, q.height]}}
    log.warning("%s: video is %dx%d, its annotation says %dx%d; boxes rescaled to the annotation's size",
                q.video, width, height, q.width, q.height)
    return pred

