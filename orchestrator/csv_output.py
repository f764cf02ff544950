"""CSV output that a spreadsheet never runs as a formula.

Every CSV the product writes goes through :func:`csv_writer` (or :func:`neutralize_cell`), so
text that comes from a segment file, the project config or a warehouse value can never become
a live formula when a data protection officer opens the file in Excel, LibreOffice or Google
Sheets.

Rule (OWASP, "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection): a cell
whose text starts with ``=``, ``+``, ``-``, ``@``, a tab (``0x09``) or a carriage return
(``0x0D``) is prefixed with a single quote, which spreadsheets show as text; quoting of
separators and quotes is the ``csv`` module's (RFC 4180). Numbers (``int``, ``float``) are
written as they are: a spreadsheet reads ``-5`` as the number -5, never as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV Injection).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


class _TextSink(Protocol):
    def write(self, text: str, /) -> Any: ...


def neutralize_cell(value: object) -> object:
    """``value`` unchanged unless it is text starting with one of :data:`FORMULA_PREFIXES`,
    in which case it is returned as text prefixed with ``'``. ``None``, booleans and numbers
    are returned unchanged; any other object is judged by its ``str()``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else value


class SafeCsvWriter:
    """A ``csv.writer`` whose rows are neutralized cell by cell (:func:`neutralize_cell`).

    ``writerow(row)`` / ``writerows(rows)`` as in the csv module; lines end with CRLF
    (RFC 4180).
    """

    def __init__(self, out: _TextSink) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n")

    def writerow(self, row: Iterable[object]) -> None:
        """Write one row, every cell neutralized."""
        self._writer.writerow([neutralize_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        """Write several rows, every cell neutralized."""
        for row in rows:
            self.writerow(row)


def csv_writer(out: _TextSink) -> SafeCsvWriter:
    """The one CSV writer of the product (see the module docstring)."""
    return SafeCsvWriter(out)
