"""Run in a fresh interpreter by the cold-start benchmark: import a handler, call it, time both.

Usage: python _coldstart_child.py HANDLER_FILE EVENT_FILE. Prints one JSON line. Only the
standard library is imported before the clock starts.
"""

import importlib.util
import json
import sys
import time


class Context:
    function_name = "talkturo-bench-ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = (
        "arn:aws:lambda:us-east-1:123456789012:function:talkturo-bench-ApiFunction"
    )
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/talkturo-bench-ApiFunction"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def main() -> None:
    handler_file, event_file = sys.argv[1], sys.argv[2]
    with open(event_file) as stream:
        event = json.load(stream)
    modules_before = len(sys.modules)

    started = time.perf_counter()
    spec = importlib.util.spec_from_file_location("app", handler_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    imported = time.perf_counter()
    first = module.handler(event, Context())
    answered = time.perf_counter()
    second = module.handler(json.loads(json.dumps(event)), Context())
    warm = time.perf_counter()

    print(
        json.dumps(
            {
                "import_ms": (imported - started) * 1000,
                "first_request_ms": (answered - imported) * 1000,
                "total_ms": (answered - started) * 1000,
                "warm_request_ms": (warm - answered) * 1000,
                "status": first["statusCode"],
                "warm_status": second["statusCode"],
                "modules_loaded": len(sys.modules) - modules_before,
            }
        )
    )


if __name__ == "__main__":
    main()
