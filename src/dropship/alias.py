"""The alias: SSM parameter ``<AliasPrefix>/<model>/<alias>`` holding a JSON record (CONTRACT.md section 3)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from dropship.aws import error_code

DEFAULT_ALIAS_PREFIX = "/dropship"
DEFAULT_ALIAS = "live"


class AliasRecord(BaseModel):
    """Exactly the contract's fields: clients resolve ``endpoint_name`` and invoke it."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    model: str
    version: str
    endpoint_name: str
    sha256: str
    released_at: str
    execution_arn: str


def parameter_name(prefix: str, model: str, alias: str) -> str:
    return f"{prefix.rstrip('/')}/{model}/{alias}"


class AliasStore:
    def __init__(self, client: Any, prefix: str = DEFAULT_ALIAS_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def get(self, model: str, alias: str) -> AliasRecord | None:
        try:
            value = self.client.get_parameter(Name=parameter_name(self.prefix, model, alias))["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        return AliasRecord.model_validate_json(value)

    def put(self, alias: str, record: AliasRecord) -> None:
        self.client.put_parameter(
            Name=parameter_name(self.prefix, record.model, alias),
            Value=record.model_dump_json(),
            Type="String",
            Overwrite=True,
            Description=f"dropship alias {alias} of model {record.model}",
        )

    def delete(self, model: str, alias: str) -> None:
        try:
            self.client.delete_parameter(Name=parameter_name(self.prefix, model, alias))
        except ClientError as exc:
            if error_code(exc) != "ParameterNotFound":
                raise

    def all_for(self, model: str) -> dict[str, AliasRecord]:
        """Every alias of a model, by alias name."""
        path = f"{self.prefix.rstrip('/')}/{model}"
        pages = self.client.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=False)
        return {
            parameter["Name"].rsplit("/", 1)[-1]: AliasRecord.model_validate_json(parameter["Value"])
            for page in pages
            for parameter in page.get("Parameters", [])
        }
