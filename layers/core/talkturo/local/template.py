"""Read template.yaml and create its storage, queues and state machines in an AWS emulator.

The local platform and the integration tests build their resources from the very template
that is deployed, so the two cannot drift apart: a state machine is created from the same ASL
file its `DefinitionUri` names, with its `DefinitionSubstitutions` resolved for this stack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[4]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"
# The account moto gives any credentials (the emulator's resources are all in it).
LOCAL_ACCOUNT = "123456789012"
# `${name}` in a state machine's definition (DefinitionSubstitutions).
_SUBSTITUTION = re.compile(r"\$\{(\w+)\}")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub …)."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as stream:
        loaded: dict[str, Any] = yaml.load(stream, Loader=_CfnLoader)  # noqa: S506 (safe loader)
    return loaded


@dataclass(frozen=True)
class SqsEventSource:
    """An SQS event of a function: which queue feeds it, and how Lambda's poller batches."""

    queue: str  # logical id
    batch_size: int = 10
    report_batch_item_failures: bool = False
    # `ScalingConfig.MaximumConcurrency`: how many batches Lambda works on at once (at most).
    # Unset, Lambda scales as the queue grows; the local runner then polls with one thread.
    max_concurrency: int | None = None


@dataclass
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    sqs_sources: list[str] = field(default_factory=list)  # logical ids of queues feeding it
    sqs_events: list[SqsEventSource] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)  # `rate(1 hour)` … of Schedule events
    timeout_seconds: int = 3  # Lambda's defaults, unless the template says otherwise
    memory_mb: int = 128


@dataclass
class Stack:
    """The emulated resources: logical id -> physical name/URL, and how to run each function."""

    name: str
    physical: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    # State machine logical id -> the ASL file it was created from.
    state_machines: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The variables every function gets (Globals), resolved for this stack."""
        merged: dict[str, str] = {}
        for function in self.functions.values():
            merged.update(function.environment)
        return merged


def provision(
    session: Any,
    stack_name: str = "talkturo-local",
    template: dict[str, Any] | None = None,
    region: str = "us-east-1",
) -> Stack:
    """Create the template's tables, buckets, queues and state machines through `session` (a
    boto3 Session)."""
    template = template or load_template()
    resources: dict[str, Any] = template["Resources"]
    stack = Stack(name=stack_name)
    dynamodb = session.client("dynamodb", region_name=region)
    s3 = session.client("s3", region_name=region)
    sqs = session.client("sqs", region_name=region)

    # Queues first in dependency order: dead-letter queues before those that redrive into them.
    queue_ids = [lid for lid, res in resources.items() if res["Type"] == "AWS::SQS::Queue"]
    queue_ids.sort(key=lambda lid: "RedrivePolicy" in resources[lid].get("Properties", {}))
    for logical_id in queue_ids:
        name = f"{stack_name}-{logical_id}"
        attributes: dict[str, str] = {}
        props = resources[logical_id].get("Properties", {})
        if "VisibilityTimeout" in props:
            attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = (
                f'{{"deadLetterTargetArn":"{stack.arns[target]}",'
                f'"maxReceiveCount":"{redrive["maxReceiveCount"]}"}}'
            )
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        stack.physical[logical_id] = url
        stack.arns[logical_id] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]

    for logical_id, resource in resources.items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table":
            name = f"{stack_name}-{logical_id}"
            dynamodb.create_table(
                TableName=name,
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
                GlobalSecondaryIndexes=props.get("GlobalSecondaryIndexes", []),
                BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            )
            ttl = props.get("TimeToLiveSpecification")
            if ttl and ttl.get("Enabled"):
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={
                        "AttributeName": ttl["AttributeName"],
                        "Enabled": True,
                    },
                )
            stack.physical[logical_id] = name
        elif kind == "AWS::S3::Bucket":
            name = f"{stack_name}-{logical_id}".lower()
            s3.create_bucket(Bucket=name)
            stack.physical[logical_id] = name

    # After the queues (their definitions name them), before the functions (whose environment
    # names the machines).
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            _create_state_machine(session, region, stack, template, logical_id)

    function_globals = template.get("Globals", {}).get("Function", {})
    globals_env = function_globals.get("Environment", {})
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        env = {
            **_resolve_vars(globals_env.get("Variables", {}), stack, template),
            **_resolve_vars(props.get("Environment", {}).get("Variables", {}), stack, template),
        }
        sqs_events = [
            SqsEventSource(
                queue=event["Properties"]["Queue"]["Fn::GetAtt"][0],
                batch_size=int(event["Properties"].get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures"
                in event["Properties"].get("FunctionResponseTypes", []),
                max_concurrency=_max_concurrency(event["Properties"]),
            )
            for event in props.get("Events", {}).values()
            if event["Type"] == "SQS"
        ]
        code_dir, handler = _code_of(logical_id, resource)
        stack.functions[logical_id] = Function(
            logical_id=logical_id,
            code_dir=code_dir,
            handler=handler,
            environment=env,
            sqs_sources=[source.queue for source in sqs_events],
            sqs_events=sqs_events,
            schedules=[
                str(event["Properties"]["Schedule"])
                for event in props.get("Events", {}).values()
                if event["Type"] == "Schedule"
            ],
            timeout_seconds=int(props.get("Timeout", function_globals.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", function_globals.get("MemorySize", 128))),
        )
    return stack


def _code_of(logical_id: str, resource: dict[str, Any]) -> tuple[Path, str]:
    """Where a function's code is and its handler: a zip function's CodeUri and Handler; an
    image function's folder (the FUNCTION its image is built with) and its image's command."""
    props = resource["Properties"]
    if props.get("PackageType") != "Image":
        return PROJECT_ROOT / props["CodeUri"], props["Handler"]
    try:
        folder = resource["Metadata"]["DockerBuildArgs"]["FUNCTION"]
        (handler,) = props["ImageConfig"]["Command"]
    except (KeyError, ValueError):
        raise ValueError(
            f"{logical_id}: an image function names its folder (Metadata.DockerBuildArgs."
            "FUNCTION) and its handler (ImageConfig.Command)"
        ) from None
    return PROJECT_ROOT / "functions" / folder, handler


def _max_concurrency(properties: dict[str, Any]) -> int | None:
    value = properties.get("ScalingConfig", {}).get("MaximumConcurrency")
    return None if value is None else int(value)


def state_machine_definition(
    resource: dict[str, Any], stack: Stack, template: dict[str, Any]
) -> str:
    """The ASL of an AWS::Serverless::StateMachine as deployed: its DefinitionUri file (or its
    inline Definition) with each `${name}` of DefinitionSubstitutions replaced."""
    props = resource["Properties"]
    if "DefinitionUri" in props:
        text = (PROJECT_ROOT / str(props["DefinitionUri"])).read_text()
    else:
        text = json.dumps(props["Definition"])
    substitutions = _resolve_vars(props.get("DefinitionSubstitutions", {}), stack, template)
    missing = set(_SUBSTITUTION.findall(text)) - set(substitutions)
    if missing:
        raise ValueError(f"no local value for the substitutions {sorted(missing)}")
    return _SUBSTITUTION.sub(lambda found: substitutions[found.group(1)], text)


def _create_state_machine(
    session: Any, region: str, stack: Stack, template: dict[str, Any], logical_id: str
) -> None:
    resource = template["Resources"][logical_id]
    created = session.client("stepfunctions", region_name=region).create_state_machine(
        name=f"{stack.name}-{logical_id}",
        definition=state_machine_definition(resource, stack, template),
        # The emulator checks no permissions; the deployed machine gets the template's policies.
        roleArn=f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{stack.name}-{logical_id}",
        type=resource["Properties"].get("Type", "STANDARD"),
    )
    # Ref of a state machine is its ARN, as in CloudFormation.
    stack.physical[logical_id] = stack.arns[logical_id] = created["stateMachineArn"]
    stack.state_machines[logical_id] = str(resource["Properties"].get("DefinitionUri", "inline"))


def _resolve(value: Any, stack: Stack, template: dict[str, Any]) -> str | None:
    """A Ref/GetAtt (or literal) of the template as this stack's value; None when it has no
    local counterpart (a secret's ARN …: the local platform sets its own value where needed)."""
    if isinstance(value, str | int | float):
        return str(value)
    if not isinstance(value, dict):
        return None
    if "Ref" in value:
        ref = value["Ref"]
        if ref in stack.physical:
            return stack.physical[ref]
        parameters = template.get("Parameters", {})
        return str(parameters[ref].get("Default", "")) if ref in parameters else None
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        logical_id, attribute = target.split(".", 1) if isinstance(target, str) else target
        if logical_id not in stack.physical:
            return None
        if attribute == "Arn":
            return stack.arns.get(logical_id)
        if attribute in ("QueueName", "Name"):
            # A queue's URL and a state machine's ARN both end in its name.
            return re.split(r"[/:]", stack.physical[logical_id])[-1]
        if attribute == "QueueUrl":
            return stack.physical[logical_id]
    return None


def _resolve_vars(
    variables: dict[str, Any], stack: Stack, template: dict[str, Any]
) -> dict[str, str]:
    resolved = {name: _resolve(value, stack, template) for name, value in variables.items()}
    return {name: value for name, value in resolved.items() if value is not None}
