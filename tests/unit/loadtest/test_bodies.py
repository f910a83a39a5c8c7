"""Body encoders, checked by decoding with independent parsers (json, urllib, email)."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from scalewise.errors import LoadTestError
from scalewise.loadtest.bodies import encode_form, encode_json, encode_multipart


def _parts(content_type: str, body: bytes) -> list[tuple[Any, ...]]:
    """(field name, filename, part content type, content) for each part, via the email parser."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    assert message.is_multipart()
    out = []
    for part in message.iter_parts():
        out.append(
            (
                part.get_param("name", header="content-disposition"),
                part.get_filename(),
                part.get_content_type(),
                part.get_payload(decode=True),
            )
        )
    return out


def test_json_is_compact_utf8() -> None:
    content_type, body = encode_json({"name": "Zoë", "n": [1, 2]})
    assert content_type == "application/json"
    assert body == '{"name":"Zoë","n":[1,2]}'.encode()
    assert json.loads(body) == {"name": "Zoë", "n": [1, 2]}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), object()])
def test_json_rejects_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(LoadTestError, match="JSON"):
        encode_json(value)


def test_form_round_trips_and_keeps_repeated_names() -> None:
    content_type, body = encode_form([("q", "a b&c"), ("tag", 1), ("tag", True), ("x", None)])
    assert content_type == "application/x-www-form-urlencoded"
    assert parse_qsl(body.decode(), keep_blank_values=True) == [
        ("q", "a b&c"),
        ("tag", "1"),
        ("tag", "true"),
        ("x", ""),
    ]
    assert encode_form({"a": "1"})[1] == b"a=1"


def test_multipart_fields_then_files(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x00binary\r\n--")
    notes = tmp_path / 'odd "name".txt'
    notes.write_text("hello")
    content_type, body = encode_multipart(
        {"album": "trip", "count": 2}, [("files", photo), ("files", str(notes))]
    )
    assert content_type.startswith("multipart/form-data; boundary=scalewise-")
    assert _parts(content_type, body) == [
        ("album", None, "text/plain", b"trip"),
        ("count", None, "text/plain", b"2"),
        ("files", "photo.png", "image/png", photo.read_bytes()),
        ("files", "odd %22name%22.txt", "text/plain", b"hello"),
    ]


def test_multipart_with_a_given_boundary_is_exact(tmp_path: Path) -> None:
    data = tmp_path / "d.bin"
    data.write_bytes(b"\x00\x01")
    _, body = encode_multipart({"k": "v"}, {"f": data}, boundary="B")
    assert body == (
        b'--B\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n'
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="d.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--B--\r\n"
    )


def test_multipart_boundary_inside_content_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="boundary"):
        encode_multipart({"k": "has B inside"}, boundary="B")


def test_multipart_missing_file_names_file_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(LoadTestError, match=r"nope\.csv.*'upload'.*No such file"):
        encode_multipart(files=[("upload", missing)])


def test_multipart_empty_is_just_the_closing_boundary() -> None:
    content_type, body = encode_multipart(boundary="Z")
    assert (content_type, body) == ("multipart/form-data; boundary=Z", b"--Z--\r\n")
