"""The errors sagemaker-containers raises and scripts catch."""

from __future__ import annotations


class ClientError(Exception):
    """An error in user code (the framework images wrap every exception of a hook in it)."""


class UnsupportedFormatError(Exception):
    """A content type no encoder or decoder handles.

    Raised from input_fn it answers 415, from output_fn it lets dropship try the next acceptable type.
    """

    def __init__(self, content_type: str, **kwargs: object) -> None:
        self.message = (
            f"Content type {content_type} is not supported by this framework.\n\n"
            "Please implement input_fn to deserialize the request data or an output_fn to serialize the response."
        )
        super().__init__(self.message, **kwargs)
