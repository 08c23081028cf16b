"""CSV files of the CRM's records (ADR 0226): read strictly, every malformed file a 4xx in the
one error shape, and written safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from plexica_sdk.errors import PlexicaError
from plexica_sdk.guard import MiB

MAX_BYTES = 5 * MiB
MAX_ROWS = 10_000
# A cell a spreadsheet would take for a formula ("CSV injection", OWASP): written with a leading
# apostrophe, which spreadsheets show as text; read back without it.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

RowError = dict[str, Any]


class CsvError(PlexicaError):
    status, code = 400, "invalid_csv"


class CsvHeaderError(PlexicaError):
    status, code = 422, "invalid_csv_header"


class TooManyRowsError(PlexicaError):
    status, code = 413, "too_many_rows"


class InvalidRowsError(PlexicaError):
    status, code = 422, "invalid_rows"


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _unescaped(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and cell[1:2] and cell[1] in FORMULA_START else cell


def write(columns: Sequence[str], rows: Iterable[Sequence[object]], out: io.StringIO) -> None:
    """``rows`` under a header of ``columns`` (RFC 4180: CRLF, quoted where needed)."""
    writer = csv.writer(out, lineterminator="\r\n")
    if out.tell() == 0:
        writer.writerow(columns)
    writer.writerows([safe_cell(v) for v in row] for row in rows)


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8-sig")  # a spreadsheet's byte order mark is not a column name
    except UnicodeDecodeError as exc:
        raise CsvError(
            "the file must be UTF-8",
            code="invalid_encoding",
            details={"byte_offset": exc.start},
        ) from None
    if "\x00" in text:
        raise CsvError("the file may not hold NUL characters", code="invalid_character")
    return text


def _header(names: list[str], required: set[str], known: set[str], ignored: set[str]) -> None:
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    missing = sorted(required - set(names))
    unknown = sorted(set(names) - known - ignored)
    if duplicates or missing or unknown:
        raise CsvHeaderError(
            "the header row must name each column once, all required ones, and no other",
            details={
                "missing": missing,
                "duplicates": duplicates,
                "unknown": unknown,
                "columns": sorted(known),
            },
        )


def read(
    body: bytes, *, required: set[str], known: set[str], ignored: set[str]
) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    """The data rows as ``(row number, {column: cell})`` and the rows' own errors.

    The header is row 1 and names the columns (case and surrounding blanks ignored); a data row
    is numbered as a spreadsheet shows it. Cells are trimmed, and an empty one is left out (the
    field's default); ``ignored`` columns (what an export adds, e.g. ``id``) are read past. A
    blank row is skipped. A file that cannot be read at all raises."""
    reader = csv.reader(io.StringIO(_text(body), newline=""), strict=True)
    number = 0  # the last row read whole
    try:
        header = next(reader, None)
        number = 1
        if header is None:
            raise CsvHeaderError(
                "the file has no header row",
                details={"missing": sorted(required), "duplicates": [], "unknown": []},
            )
        names = [n.strip().lower() for n in header]
        _header(names, required, known, ignored)
        rows: list[tuple[int, dict[str, str]]] = []
        errors: list[RowError] = []
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(rows) + len(errors) >= MAX_ROWS:
                raise TooManyRowsError(
                    f"a file holds at most {MAX_ROWS} rows", details={"max_rows": MAX_ROWS}
                )
            if len(cells) != len(names):
                message = f"has {len(cells)} cells, the header {len(names)}"
                errors.append({"row": number, "field": None, "message": message})
                continue
            values = {
                name: _unescaped(cell.strip())
                for name, cell in zip(names, cells, strict=True)
                if name in known and cell.strip()
            }
            rows.append((number, values))
    except csv.Error as exc:
        raise CsvError(f"not a CSV file: {exc}", details={"row": number + 1}) from None
    return rows, errors


def row_errors(number: int, exc: ValidationError) -> list[RowError]:
    return [
        {"row": number, "field": str(e["loc"][0]) if e["loc"] else None, "message": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


def refuse(errors: list[RowError]) -> None:
    if errors:
        errors.sort(key=lambda e: e["row"])
        rows = len({e["row"] for e in errors})
        raise InvalidRowsError(
            f"{rows} row(s) are invalid; nothing was imported", details={"errors": errors}
        )
