"""Helpers for the ASCII tables (``+----+`` / ``| a | b |``) of Xilinx text reports."""

from __future__ import annotations

import re


def is_border(line: str) -> bool:
    """Return True for a table border line such as ``+-----+----+``."""
    s = line.strip()
    return bool(s) and s[0] == "+" and set(s) <= set("+-")


def cells(line: str) -> list[str] | None:
    """Return the stripped cells of a ``| a | b |`` row, or None if the line is not a table row."""
    s = line.strip()
    if not s.startswith("|"):
        return None
    parts = s.split("|")
    # a row starts and (normally) ends with '|'
    parts = parts[1:-1] if s.endswith("|") else parts[1:]
    return [p.strip() for p in parts]


def tables(lines: list[str], start: int = 0) -> list[tuple[int, list[list[str]]]]:
    """Return every table at or after ``start`` as (line index, rows of cells), borders dropped."""
    out: list[tuple[int, list[list[str]]]] = []
    i = start
    n = len(lines)
    while i < n:
        if is_border(lines[i]):
            begin = i
            rows: list[list[str]] = []
            while i < n and (is_border(lines[i]) or lines[i].strip().startswith("|")):
                c = cells(lines[i])
                if c is not None:
                    rows.append(c)
                i += 1
            if rows:
                out.append((begin, rows))
        else:
            i += 1
    return out


def find_line(lines: list[str], pattern: str, start: int = 0) -> int:
    """Return the index of the first line at or after ``start`` matching regex ``pattern``, or -1."""
    rx = re.compile(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return i
    return -1
