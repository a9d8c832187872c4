"""Which part of an answer to read: drop ``<think>`` blocks, keep the last ``<answer>`` block.

Also ``_blank``, which removes an already-read match from the text while keeping every other
character's position (box order is read from positions).
"""

from __future__ import annotations

from stvg_plugin.parsing.patterns import _ANSWER_TAG_RE, _THINK_TAG_RE


def _strip_think(text: str) -> str:
    """Drop ``<think>...</think>``; a lone ``</think>`` drops everything before it (think opened in the
    prompt); an unclosed ``<think>`` drops the rest unless nothing else is left (answer cut mid-thought)."""
    if "think>" not in text.lower():
        return text
    pieces: list[str] = []
    pos = 0
    open_at: int | None = None
    for m in _THINK_TAG_RE.finditer(text):
        if m.group(1):  # closing tag
            if open_at is None:
                pieces = []  # everything so far was thinking
            open_at = None
            pos = m.end()
        elif open_at is None:
            pieces.append(text[pos:m.start()])
            open_at = m.end()
    if open_at is None:
        pieces.append(text[pos:])
    kept = "".join(pieces)
    if not kept.strip() and open_at is not None:
        return text[open_at:]
    return kept


def _answer_region(text: str) -> str:
    """Content of the last non-empty ``<answer>`` block (unclosed: to the end), else the whole text."""
    if "answer>" not in text.lower():
        return text
    blocks: list[str] = []
    start: int | None = None
    for m in _ANSWER_TAG_RE.finditer(text):
        if m.group(1):
            if start is not None:
                blocks.append(text[start:m.start()])
            start = None
        else:
            if start is not None:
                blocks.append(text[start:m.start()])
            start = m.end()
    if start is not None:
        blocks.append(text[start:])
    for block in reversed(blocks):
        if block.strip():
            return block
    return text


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace spans by a separator of equal length, so positions (box order) survive."""
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for s, e in sorted(spans):
        if s < pos:
            continue
        parts.append(text[pos:s])
        parts.append(";" + " " * (e - s - 1) if e > s else "")
        pos = e
    parts.append(text[pos:])
    return "".join(parts)
