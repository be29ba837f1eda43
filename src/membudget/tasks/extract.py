"""Answer extraction from model outputs: the text after the thinking, the last \\boxed{} (or a stated
final answer), option letters.

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


# A stated final answer where no box holds one: "The final answer is 204.", "Answer: $\frac{1}{2}$",
# "**Final Answer**: 42" or the marker alone on its line with the answer on the next.
_STATED = re.compile(
    r"(?:\bfinal\s+answer|\bthe\s+answer|^\s*answer|\*\*answer)\s*(?:\*\*)?\s*(?:is|:|=)\s*(?:\*\*)?[ \t]*"
    r"(?P<inline>[^\n]+)"
    r"|\*\*final\s+answer\*\*[ \t]*:?[ \t]*\n+[ \t]*(?P<below>[^\n]+)",
    re.IGNORECASE | re.MULTILINE,
)


def stated_answer(text: str) -> str | None:
    """The last clearly stated final answer ("the (final) answer is X", "Answer: X", a
    "**Final Answer**" line followed by X), with its markup stripped, or None."""
    found = list(_STATED.finditer(text))
    if not found:
        return None
    answer = found[-1].group("inline") or found[-1].group("below")
    answer = re.split(r"[,;]?\s+(?:since|because|as|which|so)\b|\.\s+(?=[A-Z])", answer)[0]
    answer = answer.strip().strip("*").strip().rstrip(".").strip()
    answer = re.sub(r"^\$+|\$+$", "", answer).strip()  # $...$
    answer = re.sub(r"^\\[(\[]|\\[)\]]$", "", answer).strip()  # \( ... \), \[ ... \]
    answer = answer.rstrip(".").strip()
    return answer or None


# Option letters. A letter counts only where the text says it is the answer; letters merely mentioned
# ("options A and B fail") do not. A lower-case letter, or "A", followed by a word is an article.
_L = r"\(?\**\s*(?:option\s+|choice\s+)?\(?([A-Da-d])\)?(?![\w])(?!\s+(?!is\b|because\b|since\b|as\b)[a-z])"
_LETTER_PATTERNS = [
    re.compile(
        r"(?i:answer|choice|option)\**\s*(?:(?i:is|must be|should be|would be)|:|=)\s*(?:(?i:therefore|thus)\s+)?"
        + _L
    ),
    re.compile(r"(?i:correct|right|best)\s+(?i:answer|option|choice)\s*(?:(?i:is|would be)|:)\s*" + _L),
    re.compile(r"(?i:choose|pick|select|go with)\s+" + _L),
    re.compile(
        r"(?:^|[^\w(])\(?(?:(?i:option|choice)\s+)?\(?([A-D])\)?\**\s+(?i:is)\s+(?i:the\s+)?(?i:correct|right)\b"
    ),
    # a conclusion at the very end: "..., so C", "Therefore, (B)."
    re.compile(r"(?i:so|thus|therefore|hence)[,:]?\s+" + _L + r"\W*$"),
]
# an answer text that is only an option: "C", "(b).", "**D**", "B) 4.2 eV"
_ONLY = re.compile(r"\W*\(?([A-Da-d])\)?(?:[).:]\s.*)?\W*", re.DOTALL)


def option_letter(text: str) -> str | None:
    """The chosen option A-D: from \\boxed{X}, then a statement ("the answer is (c)", "Answer: C",
    "B is correct", "I choose D", "..., so C"; the last one in the text wins), then an answer text
    that is only an option. None when the letters are merely mentioned."""
    boxed = last_boxed(text)
    if boxed is not None:
        inner = re.sub(r"\\(?:text|textbf|mathrm)\{([^}]*)\}", r"\1", boxed).strip()
        match = _ONLY.fullmatch(inner)
        if match:
            return match.group(1).upper()
    best: tuple[int, str] | None = None
    for pattern in _LETTER_PATTERNS:
        for match in pattern.finditer(text):
            if best is None or match.start() >= best[0]:
                best = (match.start(), match.group(1).upper())
    if best is not None:
        return best[1]
    match = _ONLY.fullmatch(text.strip())
    return match.group(1).upper() if match else None
