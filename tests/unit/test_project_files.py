"""The files that deploy the platform stay deployable."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
