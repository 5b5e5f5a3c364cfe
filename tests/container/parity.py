"""SageMaker's own inference toolkit, driven in-process as its model server drives it, for differential tests.

`Toolkit` runs sagemaker-inference's real `Transformer` (the published package) on a model directory and
script, and answers a request as multi-model-server would send it: the status and Content-Type the
Transformer sets on the context, and the body it returns.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import requests
from sagemaker_inference import content_types, decoder, encoder, errors
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer

if TYPE_CHECKING:
    from tests.container.conftest import ServeProcess


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None


class _RequestProcessor:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def get_request_properties(self) -> dict[str, str]:
        return self._headers


class MmsContext:
    """The part of multi-model-server's request context that sagemaker-inference's Transformer uses."""

    def __init__(self, model_dir: Path, headers: dict[str, str]) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.request_processor = [_RequestProcessor(headers)]
        self.status = 200
        self.content_type: str | None = None

    def set_response_content_type(self, index: int, value: str) -> None:
        self.content_type = value

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status = code


class ScikitLearnImageHandler(DefaultInferenceHandler):
    """The defaults of SageMaker's scikit-learn image on sagemaker-inference
    (aws/sagemaker-scikit-learn-container, src/sagemaker_sklearn_container/handler_service.py):
    decode, make a single row 2-D, cast JSON and CSV to float32; `model.predict`; encode as the Accept says.
    """

    @staticmethod
    def default_model_fn(model_dir: str) -> Any:
        raise NotImplementedError("the scikit-learn image has no default model_fn")

    @staticmethod
    def default_input_fn(input_data: Any, content_type: str) -> Any:
        array = decoder.decode(input_data, content_type)
        if len(array.shape) == 1:
            array = array.reshape(1, -1)
        return array.astype(np.float32) if content_type in content_types.UTF8_TYPES else array

    @staticmethod
    def default_predict_fn(input_data: Any, model: Any) -> Any:
        return model.predict(input_data)

    @staticmethod
    def default_output_fn(prediction: Any, accept: str) -> Any:
        return encoder.encode(prediction, accept), accept


class XGBoostImageHandler(DefaultInferenceHandler):
    """The defaults of SageMaker's XGBoost image (aws/sagemaker-xgboost-container, handler_service.py and
    encoder.py), restated here because that package is not published: CSV (delimiter sniffed from the
    first line, empty fields missing) and libsvm (dense, 1-based unless an index is 0; read here with
    scikit-learn's svmlight reader, whose `zero_based="auto"` is that rule) become a DMatrix, which
    `predict(..., validate_features=False)` scores; the prediction is encoded as the Accept says.
    """

    @staticmethod
    def default_model_fn(model_dir: str) -> Any:
        raise NotImplementedError("the XGBoost image has no default model_fn in script mode")

    @staticmethod
    def default_input_fn(input_data: Any, content_type: str) -> Any:
        import xgboost
        from sklearn.datasets import load_svmlight_file

        text = input_data.decode() if isinstance(input_data, bytes) else input_data
        if content_type == "text/csv":
            delimiter = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
            delimiter = "," if delimiter.isalnum() else delimiter
            rows = [["nan" if field == "" else field for field in line.split(delimiter)] for line in text.split("\n")]
            return xgboost.DMatrix(np.array(rows).astype(None))
        if content_type in ("text/libsvm", "text/x-libsvm"):
            features, _ = load_svmlight_file(io.BytesIO(text.strip().encode()), zero_based="auto")
            return xgboost.DMatrix(features.toarray())
        raise errors.UnsupportedFormatError(content_type)

    @staticmethod
    def default_predict_fn(input_data: Any, model: Any) -> Any:
        return model.predict(input_data, validate_features=False)

    @staticmethod
    def default_output_fn(prediction: Any, accept: str) -> Any:
        return encoder.encode(prediction, accept)


class Toolkit:
    """sagemaker-inference's Transformer serving `model_dir` with the script `code/<program>.py`."""

    def __init__(
        self, model_dir: Path, program: str, handler: DefaultInferenceHandler, env: dict[str, str] | None = None
    ) -> None:
        self.model_dir = model_dir
        self.transformer = Transformer(default_inference_handler=handler)
        with pytest.MonkeyPatch.context() as patch:  # the Transformer reads its environment when it initializes
            patch.setenv("SAGEMAKER_PROGRAM", program)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.syspath_prepend(str(model_dir / "code"))
            sys.modules.pop(program, None)
            self.transformer.validate_and_initialize(model_dir=str(model_dir), context=MmsContext(model_dir, {}))

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        context = MmsContext(self.model_dir, headers)
        [result] = self.transformer.transform([{"body": body}], context)
        data = result.encode("utf-8") if isinstance(result, str) else bytes(result)
        return Answer(context.status, data, context.content_type)


def http_answer(server: ServeProcess, body: bytes, headers: dict[str, str]) -> Answer:
    """dropship's answer over HTTP; no Accept header is sent unless `headers` has one."""
    sent: dict[str, str | None] = {"Accept": None, **headers}
    response = requests.post(server.url + "/invocations", data=body, headers=sent, timeout=30)
    return Answer(response.status_code, response.content, response.headers.get("content-type"))
