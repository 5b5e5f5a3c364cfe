"""`worker.Response`: the response object scripts return from output_fn (or any hook) in the framework images.

It behaves as sagemaker-containers' Response, a `flask.Response` whose default type is JSON: the same
arguments, and the same Content-Type (a charset is added to `text/*` types), status and body. dropship
sends its status, Content-Type and body; its other headers are not sent.
"""

from __future__ import annotations

import http
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sagemaker_containers import _content_types

# Types werkzeug gives a charset to besides text/* and */*+xml.
_CHARSET_TYPES = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/sql",
        "application/xml",
        "application/xml-dtd",
        "application/xml-external-parsed-entity",
    }
)


class Headers:
    """Case-insensitive response headers."""

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in items:
            self[name] = value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, str(value))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items.values())

    def get(self, name: str, default: str | None = None) -> str | None:
        item = self._items.get(name.lower())
        return item[1] if item else default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.values())


class Response:
    default_mimetype = _content_types.JSON
    default_status = 200

    def __init__(
        self,
        response: Any = None,
        accept: str | None = None,
        status: int | str = http.HTTPStatus.OK,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        mimetype: str | None = None,
        direct_passthrough: bool = False,
    ) -> None:
        if accept:
            warnings.warn('ignoring deprecated "accept" argument to Response.__init__', DeprecationWarning, 2)
        self.headers = Headers(headers)
        if mimetype is None and "content-type" not in self.headers:
            mimetype = self.default_mimetype
        if mimetype is not None:
            self.headers["Content-Type"] = _with_charset(mimetype)
        self.status = status
        self.direct_passthrough = direct_passthrough
        self.response: Iterable[Any] = []
        if isinstance(response, (str, bytes, bytearray)):
            self.set_data(response)
        elif response is not None:
            self.response = response

    @property
    def status(self) -> str:
        return self._status

    @status.setter
    def status(self, value: int | str) -> None:
        if isinstance(value, int):
            code, text = int(value), ""
        else:
            code_text, _, text = value.strip().partition(" ")
            code = int(code_text)
        try:
            phrase = http.HTTPStatus(code).phrase.upper()
        except ValueError:
            phrase = "UNKNOWN"
        self._status, self.status_code = f"{code} {text or phrase}", code

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @property
    def mimetype(self) -> str | None:
        content_type = self.content_type
        return content_type.split(";")[0].strip().lower() if content_type else None

    def get_data(self, as_text: bool = False) -> bytes | str:
        data = b"".join(chunk.encode() if isinstance(chunk, str) else bytes(chunk) for chunk in self.response)
        return data.decode() if as_text else data

    def set_data(self, value: str | bytes | bytearray) -> None:
        data = value.encode() if isinstance(value, str) else bytes(value)
        self.response = [data]
        self.headers["Content-Length"] = str(len(data))

    data = property(get_data, set_data)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status}]>"


def _with_charset(mimetype: str) -> str:
    if mimetype.startswith("text/") or mimetype in _CHARSET_TYPES or mimetype.endswith("+xml"):
        return f"{mimetype}; charset=utf-8"
    return mimetype
