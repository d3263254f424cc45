"""The statistics as CSV, in the two dialects their readers need.

``excel-fi``: what Excel on a Finnish PC opens straight into columns: UTF-8 with a
byte-order mark (or Excel reads ä and ö wrongly), ``;`` between fields (Finnish
Excel's list separator) and a decimal comma. ``rfc4180``: what programs and
spreadsheets elsewhere expect: ``,``, a decimal point and no byte-order mark.
Both end lines with CRLF, as RFC 4180 asks. The staff page's download, ``omaovi
stats --csv`` and ``omaovi central pull`` all write through here, so one file of
each dialect reads the same whichever of them wrote it.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable

DIALECTS = ("excel-fi", "rfc4180")


def cell(value, dialect: str) -> str:
    """A figure as the dialect writes it: hours with at most two decimals and no trailing zeros."""
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return text.replace(".", ",") if dialect == "excel-fi" else text
    return str(value)


def write(header: Iterable[str], rows: Iterable[Iterable], dialect: str) -> str:
    """The whole file as text, the byte-order mark included where the dialect has one."""
    if dialect not in DIALECTS:
        raise ValueError(f"the CSV dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if dialect == "excel-fi" else ",", lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(value, dialect) for value in row] for row in rows)
    return ("\ufeff" if dialect == "excel-fi" else "") + out.getvalue()
