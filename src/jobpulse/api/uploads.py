"""Streaming multipart uploads: the file part goes to disk chunk by chunk, and the size limit is enforced
while streaming (413 as soon as it is passed), so an upload is never held whole in memory.

Everything else in the form is bounded before it is kept: at most ``max_form_fields`` plain fields of at
most ``max_form_field_bytes`` each, part headers of at most :data:`~jobpulse.api.limits.PART_HEADERS_BYTES`,
and a file part ``Content-Type`` that fits its column. Uploaded files are private to the service's user
(folders 0700, files 0600, whatever the umask).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from jobpulse.api.limits import PART_HEADERS_BYTES, declared_length, in_words
from jobpulse.errors import InvalidRequest, PayloadTooLarge
from jobpulse.settings import Settings, private_dir

__all__ = ["FormLimits", "Upload", "UploadedFile", "receive_upload"]

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
# A media type as RFC 9110 writes it (type/subtype, optional parameters), printable ASCII only, and short
# enough for its column (String(255)): anything else is refused before it reaches the database.
_CONTENT_TYPE = re.compile(
    r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*;[\x20-\x7e\t]*)?"
)
_CONTENT_TYPE_CHARS = 255


@dataclass(frozen=True, slots=True)
class FormLimits:
    """The bounds of an upload form's plain fields (the file part has its own size limit)."""

    max_fields: int
    max_field_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FormLimits:
        return cls(settings.max_form_fields, settings.max_form_field_bytes)

    @property
    def max_bytes(self) -> int:
        """The most the form's plain parts (headers and values) may add to the file's size."""
        return self.max_fields * (self.max_field_bytes + PART_HEADERS_BYTES) + 2 * PART_HEADERS_BYTES


@dataclass
class UploadedFile:
    """The file part, saved on disk."""

    path: Path
    filename: str
    size_bytes: int
    content_type: str | None


@dataclass
class Upload:
    """The parsed form: plain fields, and the file (if the form had one)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None


def clean_filename(raw: str) -> str:
    """The base name the user's browser sent, without any directory part, at most 255 characters."""
    name = PureWindowsPath(PurePosixPath(raw).name).name.strip().replace("\x00", "")
    return name[:255] or "upload"


class _FormReader:
    def __init__(
        self,
        dest_dir: Path,
        file_field: str,
        max_file_bytes: int,
        limits: FormLimits,
        check_fields: Callable[[dict[str, str]], object] | None,
    ) -> None:
        self.dest_dir = dest_dir
        self.limits = limits
        self.check_fields = check_fields
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._fields = 0  # plain parts seen, named or not
        self._name = ""
        self._filename: str | None = None
        self._value = bytearray()
        self._out: IO[bytes] | None = None
        self._size = 0
        self._file_part: UploadedFile | None = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0
        self._value = bytearray()
        self._filename = None
        self._out = None

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > PART_HEADERS_BYTES:
            raise InvalidRequest(
                f"The headers of a form part are longer than {in_words(PART_HEADERS_BYTES)}.",
                code="form_part_too_large",
            )

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if raw_filename is None:
            self._fields += 1
            if self._fields > self.limits.max_fields:
                raise InvalidRequest(
                    f"The form has more than {self.limits.max_fields} fields besides the file.",
                    code="too_many_fields",
                )
            return
        if self._name != self.file_field or self.upload.file is not None:
            raise InvalidRequest(f"Only one file, in the form field '{self.file_field}', is accepted.")
        if self.check_fields is not None:
            limit = self.check_fields(self.upload.fields)
            if isinstance(limit, int):  # the fields decide a smaller limit (a job kind's own)
                self.max_file_bytes = min(self.max_file_bytes, limit)
        content_type = _content_type(self._headers.get(b"content-type"))
        self._filename = clean_filename(raw_filename.decode("utf-8", "replace"))
        suffix = _SUFFIX.fullmatch(Path(self._filename).suffix)
        private_dir(self.dest_dir.parent)
        private_dir(self.dest_dir)
        path = self.dest_dir / ("input" + (suffix.group(0).lower() if suffix else ""))
        self._out = _private_file(path)
        self._file_part = UploadedFile(path, self._filename, 0, content_type)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._size += end - start
            if self._size > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {in_words(self.max_file_bytes)}."
                )
            self._out.write(data[start:end])
        else:
            if len(self._value) + end - start > self.limits.max_field_bytes:
                raise PayloadTooLarge(
                    f"The form field '{self._name[:64]}' is longer than "
                    f"{in_words(self.limits.max_field_bytes)}.",
                    code="form_field_too_large",
                )
            self._value += data[start:end]

    def on_part_end(self) -> None:
        if self._out is not None and self._file_part is not None:
            self._out.close()
            self._out = None
            self._file_part.size_bytes = self._size
            self.upload.file = self._file_part
        elif self._name:
            self.upload.fields[self._name] = self._value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def _content_type(raw: bytes | None) -> str | None:
    """The file part's media type as sent, or 400 when it is not one (too long, control characters)."""
    if raw is None or not raw.strip():
        return None
    value = raw.decode("latin-1").strip()
    if len(value) > _CONTENT_TYPE_CHARS or not _CONTENT_TYPE.fullmatch(value):
        raise InvalidRequest(
            "The Content-Type of the file part is not a valid media type (such as text/csv).",
            code="invalid_content_type",
        )
    return value


def _private_file(path: Path) -> IO[bytes]:
    """``path`` opened for writing, readable by this user only (0600 whatever the umask), never through a
    symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # the umask may have taken bits away; it cannot have added any
        return os.fdopen(descriptor, "wb")
    except BaseException:
        os.close(descriptor)
        raise


async def receive_upload(
    request: Request,
    dest_dir: Path,
    *,
    max_file_bytes: int,
    limits: FormLimits,
    file_field: str = "file",
    check_fields: Callable[[dict[str, str]], object] | None = None,
) -> Upload:
    """Parse a multipart form, saving its file part as ``dest_dir/input<.ext>``.

    ``check_fields`` sees the fields sent before the file and may raise to refuse the upload before its
    bytes are read, or return an int: a smaller size limit for this file (a job kind's own). On any error
    ``dest_dir`` is removed, so a rejected upload leaves nothing behind.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Send the file as multipart/form-data.", code="not_multipart")
    declared = request.headers.get("content-length")
    if declared and declared_length(declared.encode("latin-1")) > max_file_bytes + limits.max_bytes:
        raise PayloadTooLarge(f"The file is larger than the limit of {in_words(max_file_bytes)}.")
    reader = _FormReader(dest_dir, file_field, max_file_bytes, limits, check_fields)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (InvalidRequest, ClientDisconnect):
        reader.close()
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    except Exception as exc:  # the multipart parser's own errors: a malformed body
        reader.close()
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise InvalidRequest("The multipart body is malformed.", code="malformed_multipart") from exc
    reader.close()
    return reader.upload
