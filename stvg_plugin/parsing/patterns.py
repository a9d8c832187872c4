"""The regular expressions that recognise every answer format, in one place.

Why one module: the robustness rules (linear-time matching: a number starts only behind a look-behind
guard, quantifiers are possessive, free-text gaps are bounded) are easiest to check with every pattern
side by side; the stages that use them (``spans``, ``boxes``, ``json_answers``, ``region``) import them.
"""

from __future__ import annotations

import re

# ----------------------------------------------------------------------------- regex atoms
# A number starts only where no digit/dot precedes it, so a long digit run is scanned once.
_UNUM = r"(?<![\w.])\d++(?:\.\d++)?+"
_SNUM = r"(?<![\w.])-?+\d++(?:\.\d++)?+"
_CLOCK = r"(?<![\w.:])\d{1,2}:\d{2}(?::\d{2})?+(?:\.\d++)?+(?![\d:])"
_TIME = rf"(?:{_CLOCK}|{_UNUM}(?![\d:]))"
_UNIT = r"(?:\s{0,3}(?:seconds?|secs?|s|%)(?![a-z]))?+"
_SEP = r"\s{0,5},\s{0,5}"
_BOX4 = rf"\[\s{{0,20}}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM})\s{{0,20}}\]"
_I = re.IGNORECASE

_SPAN_RE = re.compile(rf"({_UNUM})\s{{0,5}}s?\s{{0,5}}(?:to|-|–|and)\s{{0,5}}({_UNUM})\s{{0,5}}s?", _I)

_THINK_TAG_RE = re.compile(r"<(/?)think>", _I)
_ANSWER_TAG_RE = re.compile(r"<(/?)answer>", _I)
_VTG_DIGIT_RE = re.compile(r"<TIME_(ZERO|ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE|DOT)>", _I)
_VTG_DIGITS = {"ZERO": "0", "ONE": "1", "TWO": "2", "THREE": "3", "FOUR": "4", "FIVE": "5", "SIX": "6",
               "SEVEN": "7", "EIGHT": "8", "NINE": "9", "DOT": "."}
_FENCE_RE = re.compile(r"```(?:json)?+([^`]{1,200000})```", _I)

# Box formats (each match is blanked out of the text before times are read).
_CSV_ROW_RE = re.compile(
    rf"^[ \t]{{0,20}}({_TIME})[ \t]{{0,3}}s?[ \t]{{0,3}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})"
    rf"[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,5}},[ \t]{{0,5}}({_SNUM})[ \t]{{0,20}}$",
    re.MULTILINE,
)
_OPEN_O3_RE = re.compile(
    rf"(?:<obj>[^<]{{0,200}}</obj>\s{{0,5}})?<box>\s{{0,5}}{_BOX4}\s{{0,5}}</box>"
    rf"(?:\s{{0,5}}at\s{{0,5}}<t>\s{{0,5}}({_TIME})\s{{0,5}}</t>\s{{0,3}}s?)?",
    _I,
)
_QWEN_BOX_RE = re.compile(
    rf"(?:<\|object_ref_start\|>[^<]{{0,200}}<\|object_ref_end\|>\s{{0,5}})?<\|box_start\|>\s{{0,5}}"
    rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\){_SEP}\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)"
    rf"\s{{0,5}}<\|box_end\|>",
)
_DET_RE = re.compile(r"(?:<\|ref\|>[^<]{0,200}<\|/ref\|>\s{0,5})?<\|det\|>([^<]{0,20000})<\|/det\|>")
_LLAVA_ST_BOX_RE = re.compile(
    r"(?:<TEMP-(\d{1,3})>\s{0,5})?<WIDTH-(\d{1,3})>\s{0,5}<HEIGHT-(\d{1,3})>\s{0,5}"
    r"<WIDTH-(\d{1,3})>\s{0,5}<HEIGHT-(\d{1,3})>"
)
_POINT_TAG_RE = re.compile(r"<points?\b([^<>]{0,2000})>(?:[^<]{0,200}</points?>)?", _I)
_POINT_ATTR_RE = re.compile(rf"\b([xy])(\d{{0,3}})\s{{0,3}}=\s{{0,3}}[\"']?({_UNUM})", _I)
_TIMED_BOX_RE = re.compile(
    rf"(?:<t>\s{{0,5}})?({_TIME})\s{{0,3}}(?:</t>\s{{0,3}})?(?:seconds?|secs?|s)(?![a-z])\s{{0,3}}[:=\-–]\s{{0,5}}{_BOX4}",
    _I,
)
_INDEXED_BOX_RE = re.compile(
    rf"(?:\bframe\s{{0,3}}(\d{{1,6}})\s{{0,3}}[.:)\-–=]?|(?<![\w.])(\d{{1,6}})\s{{0,3}}[.:)])\s{{0,5}}{_BOX4}", _I
)
_BOX_RE = re.compile(_BOX4)
_PAIR_BOX_RE = re.compile(
    rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\){_SEP}\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)"
)
_PAREN_BOX_RE = re.compile(rf"\(\s{{0,5}}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM}){_SEP}({_SNUM})\s{{0,5}}\)")

# Time formats, tried in this order on the text left after boxes are blanked out.
_TIME_TAG_RE = re.compile(rf"<time>\s{{0,5}}({_TIME})\s{{0,5}}(?:-|–|to|,|and)\s{{0,5}}({_TIME})\s{{0,5}}</time>", _I)
_T_TAG_RE = re.compile(rf"<t>\s{{0,5}}({_TIME})\s{{0,5}}</t>", _I)
_TEMP_RE = re.compile(r"<TEMP-(\d{1,3})>")
_PAIR_RE = re.compile(
    rf"({_TIME})({_UNIT})\s{{0,5}}(?:(?:to|until|till|through|and)\b|-|–|—|~)\s{{0,5}}({_TIME})({_UNIT})", _I
)
_START_RE = re.compile(rf"\bstart[a-z]{{0,6}}\b[^0-9\n]{{0,30}}?({_TIME})({_UNIT})", _I)
_END_RE = re.compile(rf"\b(?:end|finish)[a-z]{{0,6}}\b[^0-9\n]{{0,30}}?({_TIME})({_UNIT})", _I)
_ANY_TIME_RE = re.compile(rf"({_TIME})({_UNIT})", _I)
