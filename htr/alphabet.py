"""The character set a model reads: index 0 is the CTC blank, index i + 1 is ``chars[i]``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BLANK = 0


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of characters; stored in every checkpoint as a plain string."""

    chars: str

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("alphabet has repeated characters")
        object.__setattr__(self, "_index", {c: i + 1 for i, c in enumerate(self.chars)})

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Alphabet:
        """The sorted set of characters used in ``texts``."""
        return cls("".join(sorted(set().union(*map(set, texts)))))

    @property
    def num_classes(self) -> int:
        """Output size of a CTC head: the characters plus the blank."""
        return len(self.chars) + 1

    def covers(self, text: str) -> bool:
        return all(c in self._index for c in text)

    def encode(self, text: str) -> list[int]:
        """Class indices of ``text``; raises KeyError on a character outside the alphabet."""
        return [self._index[c] for c in text]

    def decode(self, indices: Sequence[int]) -> str:
        """Text of class indices (no CTC collapsing here; blanks are skipped)."""
        return "".join(self.chars[i - 1] for i in indices if i != BLANK)
