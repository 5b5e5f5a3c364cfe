"""The local stack: an emulated AWS account (moto in server mode plus dropship's seams) that deploys the
project's real ``template.yaml`` and runs its state machine, Lambda code and inference container.

``LocalStack`` is the one entry point, used by the integration tests and ``dropship local up``
(``python -m dropship.local``). Importing this package does not import moto: moto is imported when a
stack starts.
"""

from dropship.local.deploy import DeployedFunction, DeployError, Deployment
from dropship.local.ports import free_port
from dropship.local.stack import LocalStack, LocalStackError

__all__ = ["DeployError", "DeployedFunction", "Deployment", "LocalStack", "LocalStackError", "free_port"]
