"""A game's observation text drawn as a board.

The built-in games render a position as a status line, rows of one character per cell ('.'
empty, 'X'/'O' by colour, or 'x'/'o' for the player to move and the opponent in the mover
views) and an optional footer (connect four's column numbers). Any game whose text has such a
block of equal-length rows is drawn as a grid; anything else is shown as the text it is.
"""

from __future__ import annotations

from dataclasses import dataclass

EMPTY = "."
PIECES = "XOxo"
CELLS = EMPTY + PIECES


@dataclass
class Board:
    above: list[str]  # lines before the grid (e.g. "X to move")
    rows: list[str]  # the grid, one string per row, one character per cell
    below: list[str]  # lines after it (e.g. column numbers)
    marked: tuple[int, int] | None = None  # (row, column) of the last move, when known

    @property
    def width(self) -> int:
        return len(self.rows[0])

    def labels(self) -> str | None:
        """A footer line that names the columns (one character each), if there is one."""
        for line in self.below:
            if len(line) == self.width and line.isalnum():
                return line
        return None

    def to_json(self) -> dict:
        labels = self.labels()
        return {"above": self.above, "rows": self.rows,
                "below": [line for line in self.below if line != labels], "labels": labels,
                "last_move": list(self.marked) if self.marked else None}


def parse_board(text: str) -> Board | None:
    """The longest block of at least two consecutive, equal-length lines made of cell marks
    (and at least two cells wide); None when the text has none."""
    lines = text.rstrip("\n").split("\n")
    best: tuple[int, int] | None = None  # (start, end) of the block
    i = 0
    while i < len(lines):
        line = lines[i]
        if len(line) >= 2 and all(c in CELLS for c in line):
            j = i + 1
            while j < len(lines) and len(lines[j]) == len(line) and all(c in CELLS for c in lines[j]):
                j += 1
            if j - i >= 2 and (best is None or j - i > best[1] - best[0]):
                best = (i, j)
            i = j
        else:
            i += 1
    if best is None:
        return None
    start, end = best
    return Board(lines[:start], lines[start:end], lines[end:])


def last_move(before: Board | None, after: Board | None) -> tuple[int, int] | None:
    """The one cell that was empty in ``before`` and holds a piece in ``after`` (colours are
    ignored: the mover views swap them every move)."""
    if before is None or after is None or len(before.rows) != len(after.rows) \
            or before.width != after.width:
        return None
    changed = [(r, c) for r, (a, b) in enumerate(zip(before.rows, after.rows))
               for c, (x, y) in enumerate(zip(a, b)) if x == EMPTY and y != EMPTY]
    return changed[0] if len(changed) == 1 else None


def boards_of(observations: list[str]) -> list[Board | None]:
    """The board of each observation, each marked with the move that led to it."""
    boards = [parse_board(o) for o in observations]
    for i in range(1, len(boards)):
        if boards[i] is not None:
            boards[i].marked = last_move(boards[i - 1], boards[i])
    return boards
