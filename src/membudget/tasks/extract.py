"""Answer extraction from model outputs: the text after the thinking, the last \\boxed{}, option letters.

Rules (the grader's contract):
  * If the output closes its thinking (`</think>`), only the text after the LAST `</think>` counts.
  * If it opened a `<think>` block and never closed it, nothing counts -- unless the token budget
    forced the answer (`forced=True`), in which case the text after the last forced
    "**Final Answer**" marker counts (or, without one, the whole text).
  * Outputs of non-thinking models (no tags at all) count whole.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
FINAL_MARKER = "**Final Answer**"
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE = re.compile(r"\\boxed +([^\s$]+)")


def answer_part(text: str, forced: bool = False) -> str | None:
    """The part of `text` that may hold the answer, or None when the thinking never ended."""
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in text:
        if not forced:
            return None
        return text.rsplit(FINAL_MARKER, 1)[1] if FINAL_MARKER in text else text
    return text


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (braces balanced; an unclosed box runs to the end)."""
    starts = [m.end() for m in _BOX.finditer(text)]
    if not starts:
        spaced = _BOX_SPACE.findall(text)
        return spaced[-1].strip() if spaced else None
    start = starts[-1]
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
    return text[start:].strip() or None  # an answer cut off by the answer-token cap


_LETTER_PATTERNS = [
    re.compile(r"(?i:answer)\s*(?:(?i:is)|:)?\s*[:\-]?\s*\(?\**\s*([A-D])\b\)?"),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"(?:^|\s)([A-D])[).:](?:\s|$)"),
    # a bare capital letter; "A" followed by a lowercase word is the article, not option A
    re.compile(r"\b([B-D]|A(?!\s+[a-z]))\b"),
]


def option_letter(text: str) -> str | None:
    """The chosen option A-D: from \\boxed{X}, then 'Answer: X' / 'answer is (X)', then '(X)', 'X)',
    then the last standalone option letter. The last match of the first pattern that matches wins."""
    boxed = last_boxed(text)
    if boxed is not None:
        inner = re.sub(r"\\text\{([^}]*)\}", r"\1", boxed).strip().strip("()").strip()
        if re.fullmatch(r"[A-Da-d]", inner):
            return inner.upper()
        match = re.match(r"\(?([A-D])\)?[\s.:)]", inner + " ")
        if match:
            return match.group(1)
    for pattern in _LETTER_PATTERNS:
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None
