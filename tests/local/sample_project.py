"""A small SAM project written into a temporary directory: what the harness tests deploy.

One bucket with EventBridge notifications, a rule (wildcard key pattern) starting a state machine whose
task retries ``FlakyError`` and ``Runtime.ExitError`` and catches ``FatalError`` by name, functions
reading their environment and calling the emulated AWS, a DynamoDB table, a bus, an SSM parameter, a
layer, queues collecting SageMaker endpoint and Step Functions execution state changes, and a function
recording aborted or timed-out executions (an EventBridge rule with a Lambda target). ``container/serve``
is a tiny stand-in for the inference server with the same interface (env vars, ``/ping``,
``/invocations``); with ``FORK_WORKER=1`` it forks a worker that ignores SIGTERM, as gunicorn's master
forks workers.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Description: dropship local harness test stack
Parameters:
  PowertoolsLayerArn:
    Type: AWS::SSM::Parameter::Value<String>
    Default: /aws/service/powertools/python/x86_64/python3.13/latest
  Greeting:
    Type: String
    Default: hello
Globals:
  Function:
    Runtime: python3.13
    Timeout: 20
    MemorySize: 256
    Layers:
      - !Ref PowertoolsLayerArn
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      VersioningConfiguration: {Status: Enabled}
      NotificationConfiguration:
        EventBridgeConfiguration:
          EventBridgeEnabled: true
  BucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Statement:
          - Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource: [!Sub "${Bucket.Arn}/*"]
            Condition: {Bool: {"aws:SecureTransport": "false"}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
  Bus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "${AWS::StackName}-bus"
  GreetingParameter:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /harness/greeting
      Type: String
      Value: !Ref Greeting
  FlowLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 7
  EndpointEvents:
    Type: AWS::SQS::Queue
  EndpointEventsRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.sagemaker]
        detail-type: [SageMaker Endpoint State Change]
      Targets:
        - Id: queue
          Arn: !GetAtt EndpointEvents.Arn
  ExecutionEvents:
    Type: AWS::SQS::Queue
  ExecutionEventsRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.states]
        detail-type: [Step Functions Execution Status Change]
      Targets:
        - Id: queue
          Arn: !GetAtt ExecutionEvents.Arn
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: shared/
      CompatibleRuntimes: [python3.13]
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/work/
      Handler: app.handler
      Layers: [!Ref SharedLayer]
      Environment:
        Variables:
          GREETING: !Ref Greeting
          TABLE: !Ref Table
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref Table}
  QuickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/work/
      Handler: app.handler
      Timeout: 1
      Environment:
        Variables:
          GREETING: quick
          TABLE: !Ref Table
  RecordEventFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/work/
      Handler: app.record_event
      Environment:
        Variables:
          GREETING: record
          TABLE: !Ref Table
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref Table}
      Events:
        Stopped:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.states]
              detail-type: [Step Functions Execution Status Change]
              detail:
                status: [ABORTED, TIMED_OUT]
  Flow:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/flow.asl.json
      DefinitionSubstitutions:
        WorkFunctionArn: !GetAtt WorkFunction.Arn
      Logging:
        Level: ALL
        IncludeExecutionData: true
        Destinations:
          - CloudWatchLogsLogGroup: {LogGroupArn: !GetAtt FlowLogs.Arn}
      Tracing: {Enabled: true}
      Policies:
        - LambdaInvokePolicy: {FunctionName: !Ref WorkFunction}
      Events:
        Upload:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.s3]
              detail-type: [Object Created]
              detail:
                bucket: {name: [!Ref Bucket]}
                object:
                  key: [{wildcard: "models/*/model.tar.gz"}]
Outputs:
  BucketName: {Value: !Ref Bucket}
  FlowArn: {Value: !Ref Flow}
  TableName: {Value: !Ref Table}
  BusName: {Value: !Ref Bus}
  EndpointEventsUrl: {Value: !Ref EndpointEvents}
  WorkFunctionName: {Value: !Ref WorkFunction}
  QuickFunctionName: {Value: !Ref QuickFunction}
  RecordEventFunctionName: {Value: !Ref RecordEventFunction}
  ExecutionEventsUrl: {Value: !Ref ExecutionEvents}
"""

HANDLER = """\
import json
import os
import signal
import time

import boto3

try:
    from sharedlib import LAYER_MARKER  # the SharedLayer, attached to WorkFunction only
except ImportError:
    LAYER_MARKER = None


class FlakyError(Exception):
    pass


class FatalError(Exception):
    pass


def handler(event, context):
    print("event:", json.dumps(event))  # must land in the log, not in the worker protocol
    key = (event.get("detail") or {}).get("object", {}).get("key", "")
    mode = event.get("mode", "")
    if "fatal" in key or mode == "fatal":
        raise FatalError("cannot process " + key)
    if "flaky" in key or "crash" in key:
        table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
        attempt = table.update_item(
            Key={"pk": key},
            UpdateExpression="ADD attempts :one",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )["Attributes"]["attempts"]
        if attempt < 2 and "crash" in key:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer ends a runtime
        if attempt < 2:
            raise FlakyError(f"attempt {attempt} failed")
    if mode == "sleep":
        time.sleep(event.get("seconds", 5))
    if mode == "exit":
        os._exit(3)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {
        "key": key,
        "greeting": os.environ["GREETING"],
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "region": os.environ["AWS_REGION"],
        "layer": LAYER_MARKER,
        "parameter": boto3.client("ssm").get_parameter(Name="/harness/greeting")["Parameter"]["Value"],
        "pid": os.getpid(),
    }


def record_event(event, context):
    # An EventBridge target: keeps the event it was given.
    detail = event["detail"]
    boto3.resource("dynamodb").Table(os.environ["TABLE"]).put_item(
        Item={"pk": f"event:{detail['executionArn']}:{detail['status']}", "event": json.dumps(event)}
    )
"""

FLOW = {
    "StartAt": "Work",
    "States": {
        "Work": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${WorkFunctionArn}", "Payload.$": "$"},
            "ResultSelector": {"result.$": "$.Payload"},
            "Retry": [
                {
                    "ErrorEquals": ["FlakyError", "Runtime.ExitError"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 3,
                    "BackoffRate": 1,
                }
            ],
            "Catch": [{"ErrorEquals": ["FatalError"], "ResultPath": "$.error", "Next": "Failed"}],
            "End": True,
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
    },
}

# A stand-in for container/serve with the same interface. model.json {"coef": [...]} -> dot products, of JSON
# instances or CSV rows (answered as CSV); {"fail": "..."} is answered 500, other bad input 400; a file named FAIL
# in the model makes it exit like a failing model_fn.
FAKE_SERVE = """\
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

model_dir = os.environ["SM_MODEL_DIR"]
print("loading model from", model_dir, flush=True)
if os.environ.get("FORK_WORKER") == "1" and os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker too busy to stop
    print("worker", os.getpid(), flush=True)
    while True:
        time.sleep(60)
if os.path.exists(os.path.join(model_dir, "FAIL")):
    print("ERROR model_fn failed: ValueError: the model is corrupt", flush=True)
    sys.exit(3)
with open(os.path.join(model_dir, "model.json")) as fh:
    coef = json.load(fh)["coef"]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, extra, content_type = 200, {}, "application/json"
        try:
            if self.headers.get("Content-Type", "").startswith("text/csv"):
                rows = [[float(x) for x in line.split(",")] for line in body.decode().splitlines() if line]
                predictions = [sum(c * x for c, x in zip(coef, row)) for row in rows]
                payload = "\\n".join(str(p) for p in predictions).encode()
                content_type = "text/csv; charset=utf-8"
            else:
                data = json.loads(body)
                if isinstance(data, dict) and data.get("fail"):  # a model that breaks on some input: a 500
                    raise RuntimeError(data["fail"])
                rows = data["instances"] if isinstance(data, dict) else data
                payload = json.dumps({"predictions": [sum(c * x for c, x in zip(coef, row)) for row in rows]}).encode()
            attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if attributes:
                extra["X-Amzn-SageMaker-Custom-Attributes"] = "seen=" + attributes
        except RuntimeError as exc:
            status, content_type = 500, "application/json"
            payload = json.dumps({"error": f"the model failed: {exc}"}).encode()
        except Exception as exc:
            status, content_type = 400, "application/json"
            payload = json.dumps({"error": f"bad input: {exc}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


server = ThreadingHTTPServer((os.environ["SAGEMAKER_BIND_TO_HOST"], int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler)
print("serving on", server.server_address, flush=True)
server.serve_forever()
"""


def write_project(root: Path) -> Path:
    """Write the sample project under ``root`` and return it."""
    (root / "functions" / "work").mkdir(parents=True)
    (root / "functions" / "work" / "app.py").write_text(HANDLER)
    (root / "shared" / "python" / "sharedlib").mkdir(parents=True)
    (root / "shared" / "python" / "sharedlib" / "__init__.py").write_text('LAYER_MARKER = "from-layer"\n')
    (root / "statemachine").mkdir()
    (root / "statemachine" / "flow.asl.json").write_text(json.dumps(FLOW, indent=2))
    (root / "container").mkdir()
    (root / "container" / "serve").write_text(FAKE_SERVE)
    (root / "template.yaml").write_text(TEMPLATE)
    return root


def model_tarball(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz holding ``files`` at its root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
