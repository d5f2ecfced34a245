"""The files that deploy the platform stay deployable."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import annotated_types
import boto3
import pytest
from moto import mock_aws

from talkturo.config import LOCAL_VOICE_PORT
from talkturo.domain.assistants import TelephonyConfig
from talkturo.local.template import load_template, provision
from talkturo.voice.server import HEALTH_PATH

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "functions/voice/Dockerfile"
# Fargate's ceiling for a container's stopTimeout (seconds between SIGTERM and SIGKILL).
FARGATE_MAX_STOP_TIMEOUT = 120
# The Lambda runtime comes with boto3; the layer does not ship it again.
PROVIDED_BY_LAMBDA = {"boto3"}


def _requirement(line: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*(\S+)\s*", line)
    assert match, f"not an exact pin: {line!r}"
    return re.sub(r"[-_.]+", "-", match[1]).lower(), match[3]


def test_the_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    done = subprocess.run(
        [str(cfn_lint), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_layer_pins_exactly_the_runtime_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_requirement(d) for d in project["dependencies"])
    for name in PROVIDED_BY_LAMBDA:
        wanted.pop(name, None)

    lines = (ROOT / "layers/core/requirements.txt").read_text().splitlines()
    pinned_list = [
        _requirement(line) for line in lines if line.strip() and not line.startswith("#")
    ]
    pinned = dict(pinned_list)

    assert len(pinned) == len(pinned_list), "a package is listed twice"
    assert pinned == wanted


# --------------------------------------------------------------------------- the voice image


def _instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return found


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _arguments(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for k, arguments in instructions if k == keyword]


def test_the_voice_image_runs_the_service_module_as_a_non_root_user() -> None:
    instructions = _instructions(DOCKERFILE)
    final = _final_stage(instructions)

    def args(keyword: str) -> list[str]:
        return _arguments(final, keyword)

    assert all(a.startswith("python:3.11-slim") for a in _arguments(instructions, "FROM"))
    assert json.loads(args("CMD")[-1]) == ["python", "-m", "talkturo.voice"]
    assert importlib.util.find_spec("talkturo.voice.__main__") is not None
    users = args("USER")
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    keywords = [k for k, _ in final]
    assert keywords.index("USER") < keywords.index("CMD")
    assert args("EXPOSE") == [str(LOCAL_VOICE_PORT)]
    assert args("STOPSIGNAL") == ["SIGTERM"]


def test_the_voice_image_checks_health_with_python_and_installs_what_it_needs() -> None:
    instructions = _instructions(DOCKERFILE)
    final = _final_stage(instructions)

    (health,) = [a for k, a in final if k == "HEALTHCHECK"]
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert HEALTH_PATH in command[2] and "VOICE_PORT" in command[2]
    runs = [a for k, a in instructions if k == "RUN"]
    assert any('pip install --no-cache-dir ".[voice]"' in run for run in runs)
    assert any("compileall" in run for run in runs)
    final_runs = [a for k, a in final if k == "RUN"]
    assert any(
        "apt-get install" in run and "--no-install-recommends" in run and "espeak-ng" in run
        for run in final_runs
    )
    env = " ".join(a for k, a in final if k == "ENV")
    assert f"VOICE_PORT={LOCAL_VOICE_PORT}" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out: a pattern matches the path or one of its parent
    folders, from the root of the context (`**/` at any depth)."""
    parts = Path(path).parts
    for pattern in patterns:
        for depth in range(1, len(parts) + 1):
            if pattern.startswith("**/"):
                matched = fnmatch.fnmatchcase(parts[depth - 1], pattern.removeprefix("**/"))
            else:
                pattern_parts = Path(pattern).parts
                matched = len(pattern_parts) == depth and all(
                    fnmatch.fnmatchcase(part, wanted)
                    for part, wanted in zip(parts[:depth], pattern_parts, strict=True)
                )
            if matched:
                return True
    return False


def test_the_build_context_keeps_local_state_out_and_what_the_image_copies_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "keep the matcher below honest"

    for local_state in [".venv", ".git", "tests", ".aws-sam", "layers/core/talkturo/__pycache__"]:
        assert _ignored(local_state, patterns), local_state
    copied = [
        source
        for keyword, arguments in _instructions(DOCKERFILE)
        if keyword == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is needed by the image build"


# --------------------------------------------------------------------------- the voice service


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def _container() -> dict[str, Any]:
    definitions = _resources()["VoiceTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert len(definitions) == 1
    container: dict[str, Any] = definitions[0]
    return container


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {pair["Name"]: pair["Value"] for pair in container["Environment"]}


def _longest_call_seconds() -> int:
    field = TelephonyConfig.model_fields["max_call_duration_seconds"]
    (limit,) = [m.le for m in field.metadata if isinstance(m, annotated_types.Le)]
    return int(limit)


def test_the_voice_task_agrees_with_the_service_code() -> None:
    resources = _resources()
    container = _container()
    target_group = resources["VoiceTargetGroup"]["Properties"]
    service = resources["VoiceService"]["Properties"]

    assert [m["ContainerPort"] for m in container["PortMappings"]] == [LOCAL_VOICE_PORT]
    assert _environment(container)["VOICE_PORT"] == str(LOCAL_VOICE_PORT)
    assert target_group["Port"] == LOCAL_VOICE_PORT
    assert target_group["HealthCheckPath"] == HEALTH_PATH
    assert service["LoadBalancers"] == [
        {
            "ContainerName": container["Name"],
            "ContainerPort": LOCAL_VOICE_PORT,
            "TargetGroupArn": {"Ref": "VoiceTargetGroup"},
        }
    ]
    ingress = resources["VoiceTaskIngressFromLoadBalancer"]["Properties"]
    assert ingress["FromPort"] == ingress["ToPort"] == LOCAL_VOICE_PORT
    assert f"127.0.0.1:{LOCAL_VOICE_PORT}{HEALTH_PATH}" in container["HealthCheck"]["Command"][-1]


def test_calls_drain_within_what_fargate_and_the_load_balancer_allow() -> None:
    resources = _resources()
    parameters = load_template()["Parameters"]
    container = _container()

    # SIGTERM -> the service's own drain -> it closes what is left -> only then SIGKILL.
    assert container["StopTimeout"] == FARGATE_MAX_STOP_TIMEOUT
    assert 0 < float(_environment(container)["VOICE_DRAIN_SECONDS"]) < container["StopTimeout"]
    # The deregistration delay (before SIGTERM) can be raised to cover the longest call...
    attributes = resources["VoiceTargetGroup"]["Properties"]["TargetGroupAttributes"]
    delay = {a["Key"]: a["Value"] for a in attributes}["deregistration_delay.timeout_seconds"]
    assert delay == {"Ref": "VoiceDrainSeconds"}
    assert parameters["VoiceDrainSeconds"]["Default"] == 120
    assert parameters["VoiceDrainSeconds"]["MaxValue"] >= _longest_call_seconds()
    # ...and a whole call fits in one WebSocket without the load balancer timing it out.
    balancer = resources["VoiceLoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    idle = {a["Key"]: a["Value"] for a in balancer}["idle_timeout.timeout_seconds"]
    assert int(idle) >= _longest_call_seconds()


def test_the_voice_task_gets_its_configuration_by_reference_and_least_privilege() -> None:
    resources = _resources()
    container = _container()
    environment = _environment(container)

    assert {
        "TABLE_NAME",
        "BUCKET_NAME",
        "POST_CALL_QUEUE_URL",
        "VOICE_TOKEN_SECRET_ARN",
        "TWILIO_SECRET_ARN",
        "PROVIDER_KEYS_SECRET_ARN",
        "PUBLIC_BASE_URL",
        "VOICE_SERVICE_URL",
        "AWS_REGION",
    } <= environment.keys()
    # Secrets by ARN only: no values resolved into the task definition.
    assert "Secrets" not in container
    assert "resolve:secretsmanager" not in json.dumps(resources["VoiceTaskDefinition"])
    for name in ["VOICE_TOKEN_SECRET_ARN", "TWILIO_SECRET_ARN", "PROVIDER_KEYS_SECRET_ARN"]:
        secret = environment[name]["Ref"]
        assert resources[secret]["Type"] == "AWS::SecretsManager::Secret"

    (policy,) = resources["VoiceTaskRole"]["Properties"]["Policies"]
    grants: dict[str, Any] = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            grants[action] = statement["Resource"]
    assert not [action for action in grants if "*" in action]
    assert grants["secretsmanager:GetSecretValue"] == [
        environment["VOICE_TOKEN_SECRET_ARN"],
        environment["TWILIO_SECRET_ARN"],
        environment["PROVIDER_KEYS_SECRET_ARN"],
    ]
    # Post-call jobs, a campaign call's end (the campaign engine refills its slot), the
    # customer events of a call (call.started, call.ended), and the auto-reload a call's draw
    # may start (charged by the billing worker, never by the voice service).
    assert grants["sqs:SendMessage"] == [
        {"Fn::GetAtt": ["PostCallQueue", "Arn"]},
        {"Fn::GetAtt": ["CampaignQueue", "Arn"]},
        {"Fn::GetAtt": ["EventQueue", "Arn"]},
        {"Fn::GetAtt": ["BillingEventQueue", "Arn"]},
    ]
    assert environment["BILLING_EVENT_QUEUE_URL"] == {"Ref": "BillingEventQueue"}
    assert environment["CAMPAIGN_QUEUE_URL"] == {"Ref": "CampaignQueue"}
    assert "dynamodb:Scan" not in grants
    assert grants["dynamodb:Query"] == [
        {"Fn::GetAtt": ["MainTable", "Arn"]},
        {"Fn::Sub": "${MainTable.Arn}/index/*"},
    ]
    assert (
        grants["s3:PutObject"]
        == grants["s3:GetObject"]
        == [
            {"Fn::Sub": "${FilesBucket.Arn}/recordings/*"},
            {"Fn::Sub": "${FilesBucket.Arn}/transcripts/*"},
        ]
    )


def test_every_function_that_draws_usage_may_queue_an_auto_reload() -> None:
    template = load_template()
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["BILLING_EVENT_QUEUE_URL"] == {"Ref": "BillingEventQueue"}
    send = {
        "SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["BillingEventQueue", "QueueName"]}}
    }
    for function in [
        "ApiFunction",
        "PostCallFunction",
        "NumberRenewalFunction",
        "BillingEventsFunction",
        "BillingWebhooksFunction",
    ]:
        assert send in template["Resources"][function]["Properties"]["Policies"], function


def test_the_carrier_webhooks_may_queue_post_call_jobs() -> None:
    template = load_template()
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POST_CALL_QUEUE_URL"] == {"Ref": "PostCallQueue"}
    policies = template["Resources"]["CarrierWebhooksFunction"]["Properties"]["Policies"]
    assert {
        "SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["PostCallQueue", "QueueName"]}}
    } in (policies)


# --------------------------------------------------------------------------- queues


def _queues_read_by_functions() -> dict[str, list[int]]:
    """Queue logical id -> the timeouts of the functions its SQS events feed."""
    template = load_template()
    default = template["Globals"]["Function"]["Timeout"]
    fed: dict[str, list[int]] = {}
    for resource in _resources().values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
                fed.setdefault(queue, []).append(int(props.get("Timeout", default)))
    return fed


def test_every_queue_has_a_dead_letter_queue_and_every_dead_letter_queue_a_worker() -> None:
    queues = {
        lid: res["Properties"]
        for lid, res in _resources().items()
        if res["Type"] == "AWS::SQS::Queue"
    }
    targets = {
        props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]: lid
        for lid, props in queues.items()
        if "RedrivePolicy" in props
    }
    assert len(targets) == len(queues) - len(targets), "each queue redrives to its own DLQ"
    for logical_id, props in queues.items():
        if logical_id in targets:
            continue
        assert props["RedrivePolicy"]["maxReceiveCount"] == 5, logical_id
    fed = _queues_read_by_functions()
    dead_letter_worker = _resources()["DeadLettersFunction"]["Properties"]
    subscribed = {
        event["Properties"]["Queue"]["Fn::GetAtt"][0]
        for event in dead_letter_worker["Events"].values()
        if event["Type"] == "SQS"
    }
    assert subscribed == set(targets)
    for event in dead_letter_worker["Events"].values():
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The worker tells the queues apart by their URLs (their names are in the event source ARN).
    variables = dead_letter_worker["Environment"]["Variables"]
    assert sorted(v["Ref"] for v in variables.values()) == sorted(targets)
    # It writes the table, and reads an import's upload to count the rows of its failing chunk.
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "MainTable"}}} in dead_letter_worker[
        "Policies"
    ]
    assert {"S3ReadPolicy": {"BucketName": {"Ref": "FilesBucket"}}} in dead_letter_worker[
        "Policies"
    ]
    assert set(fed) <= set(queues)


def test_every_queue_read_by_a_function_hides_a_message_six_times_its_timeout() -> None:
    for queue, timeouts in _queues_read_by_functions().items():
        props = _resources()[queue]["Properties"]
        visibility = int(props.get("VisibilityTimeout", 30))  # SQS's default
        assert visibility >= 6 * max(timeouts), (queue, visibility, timeouts)


@pytest.fixture
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ["AWS_ENDPOINT_URL", "AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def test_the_local_platform_creates_the_post_call_queue_and_skips_the_container_parts(
    _fake_aws: Any,
) -> None:
    stack = provision(boto3.Session(), stack_name="files")

    url = stack.environment()["POST_CALL_QUEUE_URL"]
    assert url == stack.physical["PostCallQueue"]
    sqs = boto3.client("sqs", region_name="us-east-1")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "360"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.arns["PostCallDeadLetterQueue"]
    # Only what the emulator runs is created: no network, load balancer or container resources.
    kinds = {_resources()[logical_id]["Type"] for logical_id in stack.physical}
    assert kinds == {
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::Serverless::StateMachine",
    }


# --------------------------------------------------------------------------- the Lambda layer


def _layer_files() -> list[str]:
    """The files the layer's recipe selects (./config.py, ./services/calls.py …), run as written
    without its copy step."""
    makefile = (ROOT / "layers/core/Makefile").read_text().replace("\\\n", " ")
    (copy_line,) = [line for line in makefile.splitlines() if "find . -name" in line]
    selection = copy_line.strip().split("| xargs")[0]
    done = subprocess.run(
        ["/bin/sh", "-c", selection],
        cwd=ROOT / "layers/core",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.split()


def _module_file(name: str) -> Path | None:
    path = ROOT / "layers/core" / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _imported(path: Path, name: str) -> set[str]:
    """The talkturo modules a file imports anywhere (lazy imports inside functions too, and
    names given to importlib as strings), with their parent packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)  # importlib's names; anything else is no module below
    modules = {m for m in found if m.startswith("talkturo") and _module_file(m) is not None}
    return {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 2)}


def _reached(app: Path) -> set[str]:
    todo = sorted(_imported(app, "app"))
    if app.parent.name == "api":  # the API imports its route modules by their short names
        todo += [f"talkturo.api.routes.{p.stem}" for p in (ROOT / _ROUTES).glob("*.py")]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_imported(_module_file(name), name) - seen)  # type: ignore[arg-type]
    return seen


_ROUTES = "layers/core/talkturo/api/routes"


def _functions() -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in _resources().items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_zip_function_reaches_only_what_its_layer_holds() -> None:
    layer = set(_layer_files())
    zips = {k: r for k, r in _functions().items() if r["Properties"].get("PackageType") != "Image"}
    assert zips
    for logical_id, resource in zips.items():
        props = resource["Properties"]
        assert props["Runtime"] == "python3.11", logical_id
        assert props["Layers"] == [{"Ref": "CoreLayer"}], logical_id
        app = ROOT / props["CodeUri"] / "app.py"
        missing = []
        for name in sorted(_reached(app)):
            module_file = _module_file(name)
            assert module_file is not None
            relative = "./" + str(module_file.relative_to(ROOT / "layers/core/talkturo"))
            if relative not in layer:
                missing.append(name)
        # A module the layer leaves out fails on AWS only, at the import (docs/deploy.md).
        assert not missing, f"{logical_id} imports what its layer leaves out: {missing}"


def test_image_functions_are_built_from_the_workers_image_with_their_own_handler() -> None:
    dockerfile = ROOT / "functions/Dockerfile"
    instructions = _instructions(dockerfile)
    functions = _functions().items()
    images = {k: r for k, r in functions if r["Properties"].get("PackageType") == "Image"}
    assert {"PostCallFunction", "TestRunsFunction"} <= set(images)
    for logical_id, resource in images.items():
        props, metadata = resource["Properties"], resource["Metadata"]
        assert "Runtime" not in props and "Layers" not in props and "Handler" not in props
        assert metadata["Dockerfile"] == "functions/Dockerfile" and metadata["DockerContext"] == "."
        folder = ROOT / "functions" / metadata["DockerBuildArgs"]["FUNCTION"]
        assert props["ImageConfig"]["Command"] == ["app.handler"], logical_id
        assert (folder / "app.py").exists(), logical_id
        # The local platform runs the same folder and handler.
        function = load_template_stack_function(logical_id)
        assert function == (folder, "app.handler")
    assert _arguments(instructions, "FROM") == ["public.ecr.aws/lambda/python:3.11"]
    runs = _arguments(instructions, "RUN")
    assert any('pip install --no-cache-dir ".[voice]"' in run for run in runs)
    assert any("compileall" in run for run in runs)
    assert "functions/${FUNCTION}/app.py ${LAMBDA_TASK_ROOT}/app.py" in _arguments(
        instructions, "COPY"
    )
    assert json.loads(_arguments(instructions, "CMD")[-1]) == ["app.handler"]
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    folders = [f"functions/{r['Metadata']['DockerBuildArgs']['FUNCTION']}" for r in images.values()]
    for source in ("pyproject.toml", "README.md", "layers/core/talkturo", *folders):
        assert not _ignored(source, patterns), f"{source} is needed by the image build"


def load_template_stack_function(logical_id: str) -> tuple[Path, str]:
    from talkturo.local import template

    resource = _functions()[logical_id]
    return template._code_of(logical_id, resource)


def test_the_layer_build_leaves_out_the_voice_service() -> None:
    files = _layer_files()

    assert (ROOT / "layers/core/talkturo/voice/__main__.py").exists()
    assert "./config.py" in files and "./audio.py" in files
    assert not [f for f in files if f.startswith("./voice/")]
