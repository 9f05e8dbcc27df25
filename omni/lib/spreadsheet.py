"""Cells for files people open in a spreadsheet: every export writes its cells through here.

A cell starting with one of FORMULA_PREFIXES is run as a formula by Excel, LibreOffice and
Google Sheets (=HYPERLINK(...) leaks data, +cmd|... runs a command); a leading apostrophe makes
it plain text (OWASP "CSV injection"). Tab and carriage return are on OWASP's list too.
"""
import json
import re

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A number alone (an E.164 phone number, a negative amount) runs nothing: it stays as written,
# so a phone number exports as +14155550100 and imports back as the same number.
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def neutralize_formula(value) -> str:
    """The cell text for value, safe to open in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    return "'" + text if _runs_as_formula(text) else text


def cells_by_column(columns: list[str], cells: list[str]) -> dict:
    """A CSV row's cells by their column's name, stripped, a neutralized formula ('=...) read back
    as it was; "__extra__" is set when the row has filled cells beyond its header's columns."""
    values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(columns)}
    for name, value in values.items():
        if value.startswith("'"):
            values[name] = restore_formula_text(value)
    if len(cells) > len(columns) and any(cell.strip() for cell in cells[len(columns):]):
        values["__extra__"] = True
    return values


def restore_formula_text(text: str) -> str:
    """A cell neutralize_formula() wrote, read back as the text it was given, so that an exported
    file imports unchanged."""
    if text.startswith("'") and _runs_as_formula(text[1:]):
        return text[1:]
    return text


def _runs_as_formula(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES) and PLAIN_NUMBER.fullmatch(text) is None


# --- The same rule in SQL, for exports PostgreSQL writes itself (COPY ... TO STDOUT) ----------

def neutralize_formula_sql(expression: str) -> str:
    """SQL (PostgreSQL) for the cell text neutralize_formula() gives the text of `expression`
    ('' for NULL): an apostrophe put in front when it starts with one of FORMULA_PREFIXES and is
    not a plain number. Built from the same prefixes and pattern; a test runs both over the same
    values (omni/tests/test_exports_audit.py). The expression appears SQL_EXPRESSION_USES times
    (repeat its parameters as many): the first character is compared first, so the regular
    expression runs only for the few cells that start like a formula."""
    starts = "[" + "".join("\\" + c if c in "-]\\^" else c for c in FORMULA_PREFIXES) + "]"
    # PostgreSQL's $ is the end of the text, as Python's fullmatch: not before a final newline.
    pattern = f"^(?={starts})(?!{PLAIN_NUMBER.pattern}$)"
    text = f"COALESCE(({expression})::text, '')"
    first_characters = ", ".join(str(ord(c)) for c in FORMULA_PREFIXES)
    return (f"CASE WHEN ascii({text}) IN ({first_characters}) "
            f"THEN regexp_replace({text}, {_sql_literal(pattern)}, '''') ELSE {text} END")


SQL_EXPRESSION_USES = 3


def _sql_literal(text: str) -> str:
    # Standard-conforming strings: only the quote needs doubling (tab and CR stay as they are).
    return "'" + text.replace("'", "''") + "'"


# --- XLSX, through openpyxl (the library django-import-export's XLSX format uses) ---------------
# A write-only workbook streams each row to a temporary file, so memory stays flat however
# many rows a sheet has.

# Excel's own limit per sheet (header included).
XLSX_MAX_ROWS = 1_048_576
SHEET_NAME_MAX = 31
# Characters XML 1.0 does not allow; a cell holding them would make the file unreadable.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class TooManyRows(ValueError):
    pass


def sheet_name(name: str) -> str:
    """A name Excel accepts for a sheet: at most 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", name)[:SHEET_NAME_MAX] or "Sheet"


def write_xlsx(fileobj, sheets) -> dict[str, int]:
    """Write a workbook to `fileobj`: `sheets` is an iterable of (name, header, rows), each row
    an iterable of values; every cell is written through neutralize_formula() as text. Returns
    the rows written per sheet (header excluded). Refuses a sheet past Excel's row limit."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    counts = {}
    for name, header, rows in sheets:
        name = sheet_name(name)
        sheet = workbook.create_sheet(name)
        sheet.append([_cell_text(value) for value in header])
        count = 0
        for count, row in enumerate(rows, start=1):
            if count + 1 > XLSX_MAX_ROWS:
                raise TooManyRows(f"A sheet holds at most {XLSX_MAX_ROWS - 1:,} rows.")
            sheet.append([_cell_text(value) for value in row])
        counts[name] = count
    workbook.save(fileobj)
    return counts


def _cell_text(value) -> str | None:
    # Checked again once the characters XML refuses are gone: "\x01=HYPERLINK(...)" passes the
    # first check and, stripped, would be written (and run) as a formula.
    return neutralize_formula(_XML_ILLEGAL.sub("", neutralize_formula(value))) or None


def read_xlsx(fileobj) -> dict[str, list[list[str]]]:
    """Every sheet of a workbook as rows of cell text, by sheet name: for tests and for checking
    a download."""
    from openpyxl import load_workbook

    workbook = load_workbook(fileobj, read_only=True, data_only=True)
    try:
        found = {}
        for sheet in workbook.worksheets:
            rows = []
            for row in sheet.iter_rows(values_only=True):
                cells = ["" if value is None else str(value) for value in row]
                while cells and cells[-1] == "":
                    cells.pop()
                rows.append(cells)
            found[sheet.title] = rows
        return found
    finally:
        workbook.close()
