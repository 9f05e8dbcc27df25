"""Cells for files people open in a spreadsheet: every export writes its cells through here.

A cell starting with one of FORMULA_PREFIXES is run as a formula by Excel, LibreOffice and
Google Sheets (=HYPERLINK(...) leaks data, +cmd|... runs a command); a leading apostrophe makes
it plain text (OWASP "CSV injection"). Tab and carriage return are on OWASP's list too.
"""
import json
import re
import zipfile
from xml.sax.saxutils import escape

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


# --- XLSX: a workbook of inline-string sheets, written row by row -------------------------------
# Written by hand (zip + SpreadsheetML) because openpyxl is not among Omni's packages; a sheet is
# streamed into its zip member, so memory stays flat however many rows it has.

# Excel's own limit per sheet (header included).
XLSX_MAX_ROWS = 1_048_576
SHEET_NAME_MAX = 31
# Characters XML 1.0 does not allow; a cell holding them would make the file unreadable.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def column_letter(index: int) -> str:
    """A (0) ... Z, AA ... : the letters of a 0-based column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def sheet_name(name: str) -> str:
    """A name Excel accepts for a sheet: at most 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", name)[:SHEET_NAME_MAX] or "Sheet"


def write_xlsx(fileobj, sheets) -> dict[str, int]:
    """Write a workbook to `fileobj`: `sheets` is an iterable of (name, header, rows), each row
    an iterable of values; every cell is written through neutralize_formula() as text. Returns
    the rows written per sheet (header excluded). Refuses a sheet past Excel's row limit."""
    counts = {}
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as workbook:
        for number, (name, header, rows) in enumerate(sheets, start=1):
            name = sheet_name(name)
            with workbook.open(f"xl/worksheets/sheet{number}.xml", "w") as sheet:
                counts[name] = _write_sheet(sheet, header, rows)
        names = list(counts)
        workbook.writestr("[Content_Types].xml", _content_types(len(names)))
        workbook.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        workbook.writestr("xl/workbook.xml", (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
            "<sheets>" + "".join(f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
                                 for i, name in enumerate(names, start=1)) + "</sheets></workbook>"))
        workbook.writestr("xl/_rels/workbook.xml.rels", (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                      f'relationships/worksheet" Target="worksheets/sheet{i}.xml"/>'
                      for i in range(1, len(names) + 1)) + "</Relationships>"))
    return counts


class TooManyRows(ValueError):
    pass


def _write_sheet(sheet, header, rows) -> int:
    sheet.write(f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{_MAIN}"><sheetData>'
                .encode())
    letters = [column_letter(i) for i in range(len(header))]
    count = 0
    for number, row in enumerate([header], start=1):
        sheet.write(_row_xml(number, letters, row))
    buffer = []
    for count, row in enumerate(rows, start=1):
        if count + 1 > XLSX_MAX_ROWS:
            raise TooManyRows(f"A sheet holds at most {XLSX_MAX_ROWS - 1:,} rows.")
        buffer.append(_row_xml(count + 1, letters, row))
        if len(buffer) == 500:
            sheet.write(b"".join(buffer))
            buffer = []
    sheet.write(b"".join(buffer) + b"</sheetData></worksheet>")
    return count


def _row_xml(number: int, letters: list[str], row) -> bytes:
    cells = []
    for index, value in enumerate(row):
        text = _XML_ILLEGAL.sub("", neutralize_formula(value))
        if text:
            letter = letters[index] if index < len(letters) else column_letter(index)
            cells.append(f'<c r="{letter}{number}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>')
    return f'<row r="{number}">{"".join(cells)}</row>'.encode()


def _content_types(sheets: int) -> str:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
                      'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
                      for i in range(1, sheets + 1)) + "</Types>")


def read_xlsx(fileobj) -> dict[str, list[list[str]]]:
    """Every sheet of a workbook as rows of cell text, by sheet name (inline and shared strings,
    numbers as written): for tests and for checking a download."""
    from xml.etree import ElementTree

    ns = {"m": _MAIN, "r": _REL}
    with zipfile.ZipFile(fileobj) as workbook:
        shared = []
        if "xl/sharedStrings.xml" in workbook.namelist():
            root = ElementTree.fromstring(workbook.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{_MAIN}}}t")) for si in root.findall("m:si", ns)]
        rels = ElementTree.fromstring(workbook.read("xl/_rels/workbook.xml.rels"))
        targets = {rel.get("Id"): rel.get("Target") for rel in rels}
        found = {}
        for sheet in ElementTree.fromstring(workbook.read("xl/workbook.xml")).find("m:sheets", ns):
            target = targets[sheet.get(f"{{{_REL}}}id")].lstrip("/").removeprefix("xl/")
            root = ElementTree.fromstring(workbook.read(f"xl/{target}"))
            rows = []
            for row in root.iter(f"{{{_MAIN}}}row"):
                cells = {}
                for cell in row.findall("m:c", ns):
                    column = _column_index(re.match(r"[A-Z]+", cell.get("r")).group()) if cell.get("r") else len(cells)
                    if cell.get("t") == "inlineStr":
                        text = "".join(t.text or "" for t in cell.iter(f"{{{_MAIN}}}t"))
                    else:
                        value = cell.find("m:v", ns)
                        text = "" if value is None else value.text or ""
                        if cell.get("t") == "s":
                            text = shared[int(text)]
                    cells[column] = text
                rows.append([cells.get(i, "") for i in range(max(cells, default=-1) + 1)])
            found[sheet.get("name")] = rows
        return found


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1
