"""Read a "when" answer the way V-STaR's ``eval.py`` does, without evaluating anything.

V-STaR (``eval.py``, ``calculate_temporal_iou``) passes a string answer to ``ast.literal_eval`` and
scores it only if the result is a list or tuple of exactly two ``int``/``float`` values (``bool``
included, since it is an ``int``); every other string scores 0. So ``"[4, 8]"``, ``"(4, 8)"``,
``"4, 8"`` and ``"[4., 8e0]"`` score, while ``"from 4 to 8 seconds"``, ``"3-5"`` (a binary operation
literal_eval rejects) and ``["4", "8"]`` do not.

:func:`parse_number_pair` accepts exactly the strings that ``literal_eval`` turns into such a pair
and returns the same two values; it never builds anything else, so it stops at the first token
that rules a pair out (a 400 KB answer costs microseconds) and cannot be driven into deep recursion.
Python's grammar it follows: number literals (decimal, ``0x``/``0o``/``0b``, underscores, floats;
an imaginary ``j`` makes a complex, which is not a pair member), ``True``/``False``, a unary ``+``/``-``
on a number constant (``-(4)`` yes, ``-(-4)`` and ``-True`` no), parentheses, ``[...]``/``(...)``
with an optional trailing comma, a bare top-level tuple ``4, 8``, comments, blank lines and the
indentation rules of the tokenizer. Deliberate gap: a backslash line continuation is not accepted
(scores 0 here, may score officially); tests/test_metrics_official.py fuzzes the rest against
``literal_eval``.
"""

from __future__ import annotations

import re
import sys
from typing import Any

_DIGITS = r"\d(?:_?\d)*"
_NUMBER = re.compile(  # one left-to-right pass, no backtracking over long digit runs
    rf"""
    (?:
        0[xX](?:_?[0-9a-fA-F])+ | 0[oO](?:_?[0-7])+ | 0[bB](?:_?[01])+        # prefixed ints
      | {_DIGITS} (?: \. (?:{_DIGITS})? )? (?: [eE][+-]?{_DIGITS} )?          # 1, 1., 1.5, 1e5, 1.5e5
      | \. {_DIGITS} (?: [eE][+-]?{_DIGITS} )?                               # .5, .5e5
    )
    (?P<imag>[jJ])?
    """,
    re.VERBOSE,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLANK = re.compile(r"[ \t\f]*")
_COMMENT = re.compile(r"#[^\r\n]*")
_MAX_DEPTH = 199  # CPython's tokenizer: "too many nested parentheses" at 200 levels
_LINE = re.compile(r"[^\r\n]*(\r\n|\r|\n)?")


class _Reject(Exception):
    """The string cannot be a pair of numbers (invalid, or valid but something else)."""


class _Tokens:
    """Lazy tokenizer over the subset of Python's tokens a number pair can contain."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.depth = 0

    def _skip(self) -> None:
        """Skip blanks, comments and (inside brackets) newlines; at depth 0 a newline ends the input."""
        text, n = self.text, len(self.text)
        while True:
            self.pos = _BLANK.match(text, self.pos).end()
            if self.pos < n and text[self.pos] == "#":
                self.pos = _COMMENT.match(text, self.pos).end()
            if self.pos < n and text[self.pos] in "\r\n" and self.depth > 0:
                self.pos += 1
                continue
            return

    def peek(self) -> str:
        """The next token's kind: one of ``()[],+-``, ``num``, ``name``, ``end`` (or raise)."""
        self._skip()
        if self.pos >= len(self.text):
            return "end"
        c = self.text[self.pos]
        if c in "()[],+-":
            return c
        if c in "\r\n":
            return "end" if _only_blank_lines(self.text, self.pos) else "bad"
        if c.isdigit() or (c == "." and self.pos + 1 < len(self.text) and self.text[self.pos + 1].isdigit()):
            return "num"
        if c.isascii() and (c.isalpha() or c == "_"):
            return "name"
        return "bad"

    def take(self, kind: str) -> None:
        if self.peek() != kind:
            raise _Reject
        self.pos += 1

    def number(self) -> Any:
        m = _NUMBER.match(self.text, self.pos)
        if m is None or m.group("imag"):
            raise _Reject  # malformed, or a complex literal (never an int/float pair member)
        end = m.end()
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "_."):
            raise _Reject  # "1__0", "1a", "07" handled below, "1.2.3"
        self.pos = end
        raw = m.group(0).replace("_", "")
        low = raw.lower()
        if low.startswith(("0x", "0o", "0b")):
            return int(raw, 0)
        if "." in raw or "e" in low:
            return float(raw)
        if len(raw) > 1 and raw[0] == "0" and raw.strip("0"):
            raise _Reject  # leading zeros in a decimal integer are a SyntaxError
        limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
        if limit and len(raw) > limit:
            raise _Reject  # literal_eval raises: "Exceeds the limit ... for integer string conversion"
        return int(raw)

    def name(self) -> Any:
        m = _NAME.match(self.text, self.pos)
        self.pos = m.end()
        word = m.group(0)
        if word == "True":
            return True
        if word == "False":
            return False
        raise _Reject  # None, names, keywords: never a number


def _only_blank_lines(text: str, pos: int) -> bool:
    """After the expression: only newlines, blank and comment lines. An indented blank line that ends the
    text without a newline is an IndentationError for the tokenizer, so it rules the answer out."""
    lines = re.split(r"\r\n|\r|\n", text[pos:])[1:]
    for i, line in enumerate(lines):
        stripped = line.lstrip(" \t\f")
        if stripped and not stripped.startswith("#"):
            return False
        if not stripped and line and i == len(lines) - 1:
            return False
    return True


def _leading_ok(text: str) -> int:
    """Position of the first token after literal_eval's ``lstrip(" \\t")`` and leading blank lines; -1 if
    that first content line is indented (IndentationError)."""
    pos = len(text) - len(text.lstrip(" \t"))
    first = True
    while True:
        m = _LINE.match(text, pos)
        line = m.group(0)
        body = line.rstrip("\r\n")
        content = body.lstrip(" \t\f")
        if content and not content.startswith("#"):
            indent = body[: len(body) - len(content)]
            column = len(indent.rsplit("\f", 1)[-1])
            if column and not first:
                return -1
            return pos + len(body) - len(content)
        if not m.group(1):
            return pos + len(body)
        pos = m.end()
        first = False


def _value(tok: _Tokens, top: bool = False) -> Any:
    """One expression; at the top level a comma makes a bare tuple. Returns a pair member or container."""
    first, _ = _atom_or_unary(tok)
    if tok.peek() != ",":
        return first
    if not top:
        raise _Reject
    items = [first]
    while tok.peek() == ",":
        tok.take(",")
        if tok.peek() == "end":
            break
        items.append(_atom_or_unary(tok)[0])
        if len(items) > 2:
            raise _Reject
    return tuple(items)


def _sequence(tok: _Tokens, close: str) -> tuple[list[tuple[Any, bool]], bool]:
    """``(value, is_constant)`` items up to ``close`` -> (items, saw_a_comma); three items are never a pair."""
    items: list[tuple[Any, bool]] = []
    comma = False
    while tok.peek() != close:
        items.append(_atom_or_unary(tok))
        if len(items) > 2:
            raise _Reject
        if tok.peek() == ",":
            tok.take(",")
            comma = True
        elif tok.peek() != close:
            raise _Reject
    tok.take(close)
    return items, comma


def _atom_or_unary(tok: _Tokens) -> tuple[Any, bool]:
    """-> (value, is_number_constant). Binary operators never give an int/float pair member."""
    kind = tok.peek()
    if kind in "+-":
        tok.take(kind)
        value, constant = _atom(tok)
        if not constant or isinstance(value, bool):
            raise _Reject  # literal_eval: unary +/- only on an int/float/complex constant
        out = -value if kind == "-" else +value
    else:
        out, constant = _atom(tok)
    if tok.peek() in "+-([":
        raise _Reject  # a binary operation, a call or a subscript
    return out, constant and kind not in "+-"


def _atom(tok: _Tokens) -> tuple[Any, bool]:
    kind = tok.peek()
    if kind == "num":
        return tok.number(), True
    if kind == "name":
        return tok.name(), True
    if kind in "([":
        tok.take(kind)
        tok.depth += 1
        if tok.depth > _MAX_DEPTH:
            raise _Reject
        close = ")" if kind == "(" else "]"
        items, comma = _sequence(tok, close)
        tok.depth -= 1
        if kind == "[":
            return [v for v, _ in items], False
        if len(items) == 1 and not comma:
            return items[0]  # parentheses around one expression change nothing (the AST has no node)
        return tuple(v for v, _ in items), False
    raise _Reject


def parse_number_pair(text: str) -> list | tuple | None:
    """``ast.literal_eval(text)`` if that is a list/tuple of two int/float values, else None (see module doc)."""
    if not isinstance(text, str) or "\x00" in text or "\\" in text:
        return None
    start = _leading_ok(text)
    if start < 0:
        return None
    tok = _Tokens(text)
    tok.pos = start
    try:
        value = _value(tok, top=True)
        if tok.peek() != "end":
            return None
    except (_Reject, ValueError, OverflowError, RecursionError):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return value
    return None
