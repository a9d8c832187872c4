"""Parsing model answers (spans and boxes) into predictions; never raises on odd text.

``format_span_text`` is the one answer template the model core generates and trains on;
``parse_span_text`` reads it back. ``parse_answer`` reads the free-text, tag and JSON answers of
off-the-shelf video LLMs (every format in ``notes/model.md`` §6) into a :class:`ParsedAnswer` in the
project's conventions (0-based frames, end-exclusive spans, absolute-pixel xyxy of the original video).

Robustness rules: every regex is linear-time (number starts are guarded by a look-behind and use
possessive quantifiers, free-text gaps are bounded), JSON is read with ``json.loads`` inside
``try``, nothing is ever ``eval``-ed, and any input (not only ``str``) yields a result or a flagged
failure, never an exception.

One job per module, in the order a parse runs: ``region`` (which part of the text to read),
``boxes`` (boxes found in text, converted to pixels), ``json_answers`` (JSON answers), ``spans``
(time spans and the model core's span template), ``placement`` (which frame each box belongs to),
all driven by ``answer`` (:func:`parse_answer`); ``patterns`` holds every regular expression and
``types`` what a parse takes and gives. Import from ``stvg_plugin.parsing``; the names below are its
public interface.
"""

from stvg_plugin.parsing.answer import MAX_ANSWER_CHARS, MAX_BOXES, parse_answer
from stvg_plugin.parsing.spans import SPAN_TEMPLATE, format_span_text, parse_span_text
from stvg_plugin.parsing.types import BOX_ORDERS, BOX_SCALES, TIME_UNITS, CoordHint, ParsedAnswer

__all__ = [
    "BOX_ORDERS",
    "BOX_SCALES",
    "MAX_ANSWER_CHARS",
    "MAX_BOXES",
    "SPAN_TEMPLATE",
    "TIME_UNITS",
    "CoordHint",
    "ParsedAnswer",
    "format_span_text",
    "parse_answer",
    "parse_span_text",
]
