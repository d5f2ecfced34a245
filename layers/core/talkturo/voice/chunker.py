"""Cut a streamed reply into speakable pieces: each piece goes to text-to-speech as soon as it is
complete, so the caller hears the first sentence while the model writes the rest.

A piece ends at a sentence end (. ! ? and their CJK forms) followed by a space or the end, or —
once it is long enough to be worth a request of its own — at a clause break (, ; : —). The
first piece of a reply is cut earlier than the rest: a short first piece means earlier audio.
Abbreviations and numbers ("Dr.", "3.5") do not end a sentence.
"""

from __future__ import annotations

import re

# Full-width CJK punctuation (written as escapes): ideographic full stop, ! ? , ; :
CJK_BREAKS = frozenset("\u3002\uff01\uff1f\uff0c\uff1b\uff1a")
SENTENCE_END = frozenset(".!?\u3002\uff01\uff1f")
CLAUSE_BREAK = frozenset(",;:\u2014\uff0c\uff1b\uff1a")
FIRST_CLAUSE_CHARS = 24  # a clause this long may be the first piece
CLAUSE_CHARS = 60  # later pieces wait for a clause this long
MAX_CHARS = 220  # cut at a space past this, whatever the punctuation
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "prof",
        "inc",
        "ltd",
        "jr",
        "sr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "a.m",
        "p.m",
        "no",
        "approx",
        "dept",
    ]
)
_WORD_BEFORE = re.compile(r"([\w.]+)$")


class Chunker:
    def __init__(self) -> None:
        self._buffer = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Pieces completed by this delta (possibly none)."""
        self._buffer += text
        pieces: list[str] = []
        while True:
            cut = self._cut_point()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        """Whatever is left when the reply ends."""
        piece, self._buffer = self._buffer.strip(), ""
        if piece:
            self._emitted += 1
            return [piece]
        return []

    def _cut_point(self) -> int | None:
        text = self._buffer
        clause_min = FIRST_CLAUSE_CHARS if self._emitted == 0 else CLAUSE_CHARS
        last_clause: int | None = None
        for index, char in enumerate(text):
            after = index + 1
            # A break needs what follows it: a space (or, for CJK, nothing at all).
            followed = after < len(text) and text[after].isspace()
            cjk = char in CJK_BREAKS
            if char in SENTENCE_END and (followed or cjk):
                if cjk or not self._is_abbreviation(text[:index], char):
                    return after
            elif char in CLAUSE_BREAK and (followed or cjk) and after >= clause_min:
                last_clause = after
        if last_clause is not None:
            return last_clause
        if len(text) > MAX_CHARS:
            space = text.rfind(" ", 0, MAX_CHARS)
            return space + 1 if space > 0 else MAX_CHARS
        return None

    @staticmethod
    def _is_abbreviation(before: str, char: str) -> bool:
        if char != ".":
            return False
        match = _WORD_BEFORE.search(before)
        if not match:
            return False
        word = match.group(1).lower()
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())
