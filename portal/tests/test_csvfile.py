"""kernel.csvfile, the one reader of uploaded CSV files."""

import io

import pytest

from kernel import csvfile
from kernel.errors import RuleViolation


class Upload(io.BytesIO):
    """An upload whose declared size may lie (a streamed body's size is the client's)."""

    def __init__(self, data: bytes, size: int):
        super().__init__(data)
        self.size = size


def test_an_upload_is_read_no_further_than_one_byte_past_the_cap():
    upload = Upload(b"a,b\n" + b"x" * 100, size=4)
    with pytest.raises(RuleViolation, match="larger than") as exc:
        csvfile.read_upload(upload, max_bytes=50)
    assert (exc.value.code, exc.value.field) == ("file_too_large", "file")
    assert upload.tell() == 51


def test_a_declared_size_over_the_cap_is_refused_unread():
    upload = Upload(b"a,b\n", size=10**9)
    with pytest.raises(RuleViolation, match="larger than"):
        csvfile.read_upload(upload, max_bytes=50)
    assert upload.tell() == 0


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"a,b\n1,2\n", "a,b\n1,2\n"), (b"\xef\xbb\xbfa,b\n", "a,b\n")],
)
def test_utf8_with_or_without_a_byte_order_mark_is_read(data, text):
    assert csvfile.decode(data, max_bytes=100) == text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("a,b\nMüller,1\n".encode("cp1252"), r"not UTF-8 text \(byte 6 is not\)"),
        ("a,b\n".encode("utf-16"), "UTF-16"),
        (b"a,b\n\x00", "binary data"),
    ],
)
def test_other_encodings_are_refused_by_name(data, message):
    with pytest.raises(RuleViolation, match=message) as exc:
        csvfile.decode(data, max_bytes=100)
    assert exc.value.code == "bad_encoding"


def test_records_number_rows_as_a_spreadsheet_and_cap_the_data_rows():
    text = "a;b\n\n1;2\n;\n3;4\n"
    assert list(csvfile.records(text, max_bytes=100, max_rows=2)) == [
        (1, ["a", "b"]),
        (3, ["1", "2"]),
        (5, ["3", "4"]),
    ]
    with pytest.raises(RuleViolation, match="more than 1 rows") as exc:
        list(csvfile.records(text, max_bytes=100, max_rows=1))
    assert exc.value.code == "too_many_rows"


def test_text_that_is_not_csv_names_its_row():
    # A cell past the csv module's own field limit (128 KiB).
    text = "a\n1\n" + "x" * 200_000 + "\n"
    with pytest.raises(RuleViolation, match="Row 3 is not valid CSV") as exc:
        list(csvfile.records(text, max_bytes=300_000, max_rows=10))
    assert exc.value.code == "bad_csv"
