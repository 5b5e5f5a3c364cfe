"""dropship: drop model.tar.gz in S3, get a smoke-tested SageMaker endpoint behind a stable alias.

The domain package shared by the Lambda functions (shipped to them as a layer) and the command line.
Nothing here creates an AWS client or reads the environment at import time.
"""

__version__ = "0.2.0"
