"""The parts of the stack a release's bookkeeping touches, built once per execution environment.

Clean Up, Finish Release and the reaper all compensate, record and announce through the same parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from dropship import clients, settings
from dropship.alias import AliasStore
from dropship.endpoints import Endpoints
from dropship.history import ReleaseTable
from dropship.notify import Notifier
from dropship.waits import EndpointWaits
from dropship.watch import Watches


@dataclass(frozen=True)
class Parts:
    table: ReleaseTable
    endpoints: Endpoints
    aliases: AliasStore
    waits: EndpointWaits
    watches: Watches
    notifier: Notifier


NonEmpty = Annotated[str, Field(min_length=1)]


class StackSettings(settings.Settings):
    """The environment every bookkeeping function shares (template.yaml's Globals and its own)."""

    table_name: NonEmpty
    alias_prefix: NonEmpty
    event_bus_name: NonEmpty
    stack_name: NonEmpty


def build() -> Parts:
    """The parts, from this function's environment and clients."""
    env = settings.load(StackSettings)
    return Parts(
        table=ReleaseTable(clients.dynamodb(), env.table_name),
        endpoints=Endpoints(clients.sagemaker(), env.stack_name, clients.autoscaling()),
        aliases=AliasStore(clients.ssm(), env.alias_prefix),
        waits=EndpointWaits(clients.dynamodb(), env.table_name, clients.stepfunctions()),
        watches=Watches(clients.dynamodb(), env.table_name, clients.cloudwatch(), clients.stepfunctions()),
        notifier=Notifier(clients.events(), env.event_bus_name),
    )
