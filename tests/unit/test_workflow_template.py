"""The campaign wake state machine as template.yaml declares it, and as the emulator creates it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from talkturo.local.template import (
    PROJECT_ROOT,
    Stack,
    load_template,
    state_machine_definition,
)

QUEUE_URL = "http://127.0.0.1:4566/123456789012/talkturo-local-CampaignQueue"


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def _machine() -> dict[str, Any]:
    machine: dict[str, Any] = _resources()["CampaignWakeStateMachine"]
    return machine


def test_the_machine_is_the_asl_file_in_statemachines() -> None:
    props = _machine()["Properties"]
    assert _machine()["Type"] == "AWS::Serverless::StateMachine"
    assert props["Type"] == "STANDARD"  # waits of up to a year; Express stops at 5 minutes
    assert props["DefinitionUri"] == "statemachines/campaign_wake.asl.json"
    assert "Definition" not in props
    assert props["DefinitionSubstitutions"] == {"CampaignQueueUrl": {"Ref": "CampaignQueue"}}
    # It may send to its queue and nothing else.
    assert props["Policies"] == [
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["CampaignQueue", "QueueName"]}}}
    ]


def test_the_definition_waits_until_wake_at_then_sends_the_message_with_retries() -> None:
    definition = json.loads((PROJECT_ROOT / "statemachines/campaign_wake.asl.json").read_text())
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
    states = definition["States"]
    wait = states[definition["StartAt"]]
    assert wait == {"Type": "Wait", "TimestampPath": "$.wake_at", "Next": "SendJob"}
    send = states["SendJob"]
    assert send["Resource"] == "arn:aws:states:::sqs:sendMessage"
    assert send["Parameters"] == {
        "QueueUrl": "${CampaignQueueUrl}",
        "MessageBody.$": "$.message",
    }
    assert send["Retry"] and send["End"] is True


def test_the_substitutions_resolve_to_this_stack_s_queue() -> None:
    stack = Stack(name="talkturo-local", physical={"CampaignQueue": QUEUE_URL})

    definition = json.loads(state_machine_definition(_machine(), stack, load_template()))

    assert definition["States"]["SendJob"]["Parameters"]["QueueUrl"] == QUEUE_URL
    assert "${" not in json.dumps(definition)


def test_a_substitution_without_a_local_value_is_an_error_not_a_literal() -> None:
    with pytest.raises(ValueError, match="CampaignQueueUrl"):
        state_machine_definition(_machine(), Stack(name="empty"), load_template())


def test_the_campaign_workers_are_fed_and_scheduled_as_the_engine_expects() -> None:
    resources = _resources()
    worker = resources["CampaignFunction"]["Properties"]
    assert worker["CodeUri"] == "functions/campaigns"
    (event,) = worker["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"] == {
        "Queue": {"Fn::GetAtt": ["CampaignQueue", "Arn"]},
        "BatchSize": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": 5},
    }
    tick = resources["CampaignTickFunction"]["Properties"]
    assert tick["CodeUri"] == "functions/campaign_tick"
    (schedule,) = tick["Events"].values()
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"
    for path in ("functions/campaigns/app.py", "functions/campaign_tick/app.py"):
        assert (PROJECT_ROOT / path).is_file()


def test_every_function_knows_the_machine_and_only_the_schedulers_start_it() -> None:
    template = load_template()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["CAMPAIGN_QUEUE_URL"] == {"Ref": "CampaignQueue"}
    assert variables["CAMPAIGN_WAKE_STATE_MACHINE_ARN"] == {"Ref": "CampaignWakeStateMachine"}
    start = {
        "StepFunctionsExecutionPolicy": {
            "StateMachineName": {"Fn::GetAtt": ["CampaignWakeStateMachine", "Name"]}
        }
    }
    send = {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["CampaignQueue", "QueueName"]}}}
    resources = template["Resources"]
    dial = {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["DialQueue", "QueueName"]}}}
    # The carrier's callbacks refill a campaign call's slot as it ends: they dispatch.
    for name in (
        "ApiFunction",
        "CampaignFunction",
        "CampaignTickFunction",
        "CarrierWebhooksFunction",
    ):
        policies = resources[name]["Properties"]["Policies"]
        assert start in policies and send in policies and dial in policies, name
    # These only tell the engine that a campaign call ended.
    for name in ("DialerFunction", "CallTimeoutFunction"):
        policies = resources[name]["Properties"]["Policies"]
        assert send in policies and start not in policies, name
