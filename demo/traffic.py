"""Production traffic for the demo: iris flowers of every kind sent through a model's alias until stopped.

    python demo/traffic.py MODEL    (stop it with Ctrl-C or SIGTERM)

It resolves the alias before every request, as a client of dropship should, and prints one line per
second: how many requests were answered and how many failed.
"""

import json
import os
import signal
import sys
import time

import boto3
from botocore.exceptions import ClientError

FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5], [4.9, 3.0, 1.4, 0.2]]


def main() -> None:
    model = sys.argv[1]
    port = os.environ.get("DROPSHIP_LOCAL_PORT", "4566")
    options = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    ssm, runtime = boto3.client("ssm", **options), boto3.client("sagemaker-runtime", **options)
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    answered = failed = 0
    last = time.monotonic()
    for n in range(10**9):
        if stopped:
            break
        alias = json.loads(ssm.get_parameter(Name=f"/dropship/{model}/live")["Parameter"]["Value"])
        body = json.dumps({"instances": [FLOWERS[n % len(FLOWERS)]]})
        try:
            runtime.invoke_endpoint(EndpointName=alias["endpoint_name"], Body=body, ContentType="application/json")
            answered += 1
        except ClientError:
            failed += 1
        if time.monotonic() - last >= 5:
            print(f"  traffic: {answered} answered, {failed} failed (version {alias['version']})", flush=True)
            answered = failed = 0
            last = time.monotonic()
        time.sleep(0.1)


if __name__ == "__main__":
    main()
