"""SageMaker data capture for the local endpoints: files in SageMaker's format and layout, in the emulated S3.

moto 5.2.5 keeps an endpoint config's ``DataCaptureConfig`` and shows it unchanged in DescribeEndpoint; nothing is
captured. Here, as the SageMaker Developer Guide describes ("Capture data from real-time endpoint"):

- With ``EnableCapture`` (the default) the sampled share (``InitialSamplingPercentage``) of successful
  invocations is captured as JSON Lines, one record per invocation::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "...",
     "encoding": "CSV"}, "endpointOutput": {...}}, "eventMetadata": {"eventId": "<uuid>",
     "inferenceTime": "2022-02-14T17:25:49Z"}, "eventVersion": "0"}

  ``endpointInput`` / ``endpointOutput`` as ``CaptureOptions`` asks (``Input``, ``Output``); ``eventMetadata``
  also has ``inferenceId`` when the request gave one. A body whose media type is one of
  ``CaptureContentTypeHeader``'s ``CsvContentTypes`` or ``JsonContentTypes`` is kept as text (encoding ``CSV``
  or ``JSON``); any other (or every body, without ``CaptureContentTypeHeader``) is base64 (``BASE64``).
- Files go to ``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl``
  (the hour of the invocation; the name as SageMaker's, e.g. ``32-18-648-cee08c3a-....jsonl``), written every
  ``DROPSHIP_LOCAL_CAPTURE_FLUSH_SECONDS`` (default 2; 0 writes each record at once; SageMaker takes a couple of
  minutes), when the endpoint is deleted and when the stack stops. Writing them puts S3's usual events.
- DescribeEndpoint shows SageMaker's summary (``EnableCapture``, ``CaptureStatus``, ``CurrentSamplingPercentage``,
  ``DestinationS3Uri``, and ``KmsKeyId`` only when one was given) when capture is configured, and nothing otherwise.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from dropship.local.periodic import Periodic

log = logging.getLogger(__name__)


def summary(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """DescribeEndpoint's ``DataCaptureConfig`` (a ``DataCaptureConfigSummary``) for an endpoint config's."""
    if not config:
        return None
    enabled = bool(config.get("EnableCapture", True))
    shown: dict[str, Any] = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(config.get("InitialSamplingPercentage", 0)),
        "DestinationS3Uri": str(config.get("DestinationS3Uri", "")),
    }
    if config.get("KmsKeyId"):
        shown["KmsKeyId"] = config["KmsKeyId"]
    return shown


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def encode(body: bytes, content_type: str, header: Mapping[str, Any] | None) -> tuple[str, str]:
    """``(data, encoding)``: text for the configured CSV and JSON content types, else base64."""
    if header:
        media = _media_type(content_type)
        for key, encoding in (("CsvContentTypes", "CSV"), ("JsonContentTypes", "JSON")):
            if media in {_media_type(t) for t in header.get(key) or []}:
                try:
                    return body.decode("utf-8"), encoding
                except UnicodeDecodeError:
                    break  # not text after all: kept as it is, in base64
    return base64.b64encode(body).decode("ascii"), "BASE64"


@dataclass(frozen=True)
class Exchange:
    """One invocation as data capture sees it."""

    endpoint_name: str
    variant_name: str
    request_body: bytes
    request_content_type: str
    response_body: bytes
    response_content_type: str
    inference_id: str | None = None


def record(config: Mapping[str, Any], exchange: Exchange, when: datetime) -> dict[str, Any]:
    """The capture record of one invocation, in SageMaker's format."""
    modes = {str(option.get("CaptureMode", "")).lower() for option in config.get("CaptureOptions") or []}
    header = config.get("CaptureContentTypeHeader")
    captured: dict[str, Any] = {}
    if modes & {"input", "inputandoutput"}:
        data, encoding = encode(exchange.request_body, exchange.request_content_type, header)
        captured["endpointInput"] = {
            "observedContentType": exchange.request_content_type,
            "mode": "INPUT",
            "data": data,
            "encoding": encoding,
        }
    if modes & {"output", "inputandoutput"}:
        data, encoding = encode(exchange.response_body, exchange.response_content_type, header)
        captured["endpointOutput"] = {
            "observedContentType": exchange.response_content_type,
            "mode": "OUTPUT",
            "data": data,
            "encoding": encoding,
        }
    metadata = {"eventId": str(uuid.uuid4()), "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if exchange.inference_id:
        metadata["inferenceId"] = exchange.inference_id
    return {"captureData": captured, "eventMetadata": metadata, "eventVersion": "0"}


def object_key(prefix: str, endpoint_name: str, variant_name: str, when: datetime) -> str:
    """``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl``"""
    folder = "/".join(p for p in (prefix.strip("/"), endpoint_name, variant_name) if p)
    stamp = f"{when:%M-%S}-{when.microsecond // 1000:03d}"
    return f"{folder}/{when:%Y/%m/%d/%H}/{stamp}-{uuid.uuid4()}.jsonl"


@dataclass(frozen=True)
class _Batch:
    """Records bound for one file: one account, destination, endpoint, variant and hour."""

    account_id: str
    bucket: str
    prefix: str
    endpoint_name: str
    variant_name: str
    hour: str


class DataCapture:
    """Samples, formats and writes data capture records of the local endpoints."""

    def __init__(self, flush_s: float, rng: random.Random | None = None) -> None:
        self.flush_s = flush_s
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._pending: dict[_Batch, list[tuple[datetime, str]]] = defaultdict(list)
        self._ticker = Periodic(flush_s, self.flush, "data-capture")

    def start(self) -> DataCapture:
        self._ticker.start()
        return self

    def stop(self) -> None:
        """Write what is pending and stop."""
        self._ticker.stop()
        self.flush()

    def capture(self, account_id: str, config: Mapping[str, Any] | None, exchange: Exchange) -> bool:
        """Capture the invocation if the endpoint's config says so and it is sampled; True if it was."""
        if not config or not config.get("EnableCapture", True):
            return False
        if self._rng.random() * 100.0 >= float(config.get("InitialSamplingPercentage", 0)):
            return False
        destination = urlparse(str(config.get("DestinationS3Uri", "")))
        if destination.scheme != "s3" or not destination.netloc:
            log.warning("data capture of %s: %s is not an s3:// URI", exchange.endpoint_name, destination.geturl())
            return False
        when = datetime.now(UTC)
        batch = _Batch(
            account_id,
            destination.netloc,
            destination.path,
            exchange.endpoint_name,
            exchange.variant_name,
            when.strftime("%Y%m%d%H"),
        )
        line = json.dumps(record(config, exchange, when), separators=(",", ":"))
        with self._lock:
            self._pending[batch].append((when, line))
        if self.flush_s <= 0:
            self.flush()
        return True

    def flush(self, endpoint_name: str | None = None) -> int:
        """Write the pending records (of one endpoint, or all) to S3, one file per batch; returns the files."""
        with self._lock:
            batches = [b for b in self._pending if endpoint_name is None or b.endpoint_name == endpoint_name]
            taken = {b: self._pending.pop(b) for b in batches}
        for batch, lines in taken.items():
            self._write(batch, lines)
        return len(taken)

    def _write(self, batch: _Batch, lines: list[tuple[datetime, str]]) -> None:
        from moto.s3.models import s3_backends

        key = object_key(batch.prefix, batch.endpoint_name, batch.variant_name, lines[0][0])
        body = "".join(f"{line}\n" for _, line in lines).encode()
        try:
            s3_backends[batch.account_id]["aws"].put_object(batch.bucket, key, body)
        except Exception as exc:  # as SageMaker, capture never fails an invocation: the records are dropped
            log.warning(
                "data capture of %s: could not write s3://%s/%s: %s", batch.endpoint_name, batch.bucket, key, exc
            )
