"""Every error the API can answer is documented in docs/errors.md, with its status.

The errors are collected from the code itself, so a new one is caught wherever it is added:
each TalkturoError subclass (its status, type and code, inherited or its own), every literal
`code=` given when one is raised, and the answers built in api/errors.py.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from talkturo.api.errors import HTTP_ERROR_CODES, HTTP_ERROR_FALLBACK
from talkturo.local.template import PROJECT_ROOT

SOURCES = [PROJECT_ROOT / "layers" / "core" / "talkturo", PROJECT_ROOT / "functions"]
ERRORS_MODULE = PROJECT_ROOT / "layers" / "core" / "talkturo" / "api" / "errors.py"
DOC = PROJECT_ROOT / "docs" / "errors.md"
BASE = "TalkturoError"
ATTRIBUTES = ("status", "type", "code")


@dataclass(frozen=True)
class Answer:
    status: int
    type: str
    code: str

    def __str__(self) -> str:
        return f"{self.status} {self.type} {self.code}"


@dataclass
class ErrorClass:
    bases: list[str]
    own: dict[str, object]
    where: str


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _constants(module: ast.Module) -> dict[str, object]:
    """Module-level `NAME = <literal>` (so `code=SOME_CODE` can be read too)."""
    found: dict[str, object] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _classes(modules: list[tuple[Path, ast.Module]]) -> dict[str, ErrorClass]:
    classes: dict[str, ErrorClass] = {}
    for path, module in modules:
        for node in ast.walk(module):
            if not isinstance(node, ast.ClassDef):
                continue
            own: dict[str, object] = {}
            for statement in node.body:
                targets: list[ast.expr] = []
                if isinstance(statement, ast.Assign):
                    targets, value = statement.targets, statement.value
                elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                    targets, value = [statement.target], statement.value
                for target in targets:
                    if (
                        isinstance(target, ast.Name)
                        and target.id in ATTRIBUTES
                        and isinstance(value, ast.Constant)
                    ):
                        own[target.id] = value.value
            bases = [name for name in map(_name, node.bases) if name]
            classes[node.name] = ErrorClass(bases, own, f"{path.name}:{node.lineno}")
    return classes


def _resolve(classes: dict[str, ErrorClass], name: str) -> dict[str, object] | None:
    """The status, type and code of an error class, or None when it is not a TalkturoError."""
    error = classes.get(name)
    if error is None:
        return None
    if name == BASE:
        return dict(error.own)
    for base in error.bases:
        inherited = _resolve(classes, base)
        if inherited is not None:
            return {**inherited, **error.own}
    return None


@cache
def collect() -> tuple[frozenset[Answer], tuple[str, ...]]:
    """Every (status, type, code) the code can answer, and the `code=` it cannot read."""
    modules = list(_modules())
    classes = _classes(modules)
    answers: set[Answer] = set()
    unreadable: list[str] = []

    def add(attributes: dict[str, object], code: object) -> None:
        status, type_ = attributes["status"], attributes["type"]
        assert isinstance(status, int) and isinstance(type_, str) and isinstance(code, str)
        answers.add(Answer(status, type_, code))

    for name in classes:
        attributes = _resolve(classes, name)
        if attributes is not None:
            add(attributes, attributes["code"])
    for path, module in modules:
        constants = _constants(module)
        for node in ast.walk(module):
            if not isinstance(node, ast.Call):
                continue
            callee = _name(node.func)
            attributes = _resolve(classes, callee) if callee else None
            if attributes is not None:
                for keyword in node.keywords:
                    if keyword.arg != "code":
                        continue
                    value = keyword.value
                    if isinstance(value, ast.Constant):
                        add(attributes, value.value)
                    elif isinstance(value, ast.Name) and value.id in constants:
                        add(attributes, constants[value.id])
                    elif not (isinstance(value, ast.Name) and value.id == "code"):
                        # (`code=code` passes a caller's code on: the caller is checked.)
                        unreadable.append(f"{path.name}:{node.lineno}")
            if path == ERRORS_MODULE and callee == "envelope":
                literal = [a.value for a in node.args[:3] if isinstance(a, ast.Constant)]
                if len(literal) == 3:
                    answers.add(Answer(*literal))
    for status, code in HTTP_ERROR_CODES.items():
        answers.add(Answer(status, "invalid_request_error", code))
    return frozenset(answers), tuple(unreadable)


def documented() -> tuple[set[Answer], set[str]]:
    """The rows of the codes table, and the types of the types table."""
    answers: set[Answer] = set()
    types: set[str] = set()
    for line in DOC.read_text().splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            answers.add(Answer(int(cells[0]), cells[1], cells[2]))
        elif len(cells) >= 2 and re.fullmatch(r"[a-z_]+_error", cells[0]):
            types.add(cells[0])
    return answers, types


def test_every_error_the_api_answers_is_documented() -> None:
    answers, _ = collect()
    rows, _ = documented()
    missing = sorted(map(str, answers - rows))
    assert not missing, f"add these (status type code) to {DOC.name}: {missing}"


def test_every_error_type_is_explained() -> None:
    answers, _ = collect()
    _, types = documented()
    assert {a.type for a in answers} <= types


def test_every_code_given_when_raising_is_a_literal() -> None:
    # A code built at run time (an f-string, a lookup) cannot be checked against the docs.
    _, unreadable = collect()
    assert not unreadable, f"pass code= as a literal or a module constant at {unreadable}"


def test_the_code_of_any_other_framework_error_is_explained() -> None:
    assert f"`{HTTP_ERROR_FALLBACK}`" in DOC.read_text()


def test_the_docs_list_no_error_the_code_cannot_answer() -> None:
    answers, _ = collect()
    rows, _ = documented()
    assert sorted(map(str, rows - answers)) == []


def test_the_collection_finds_what_it_must() -> None:
    # The collector itself: a class, a raise with a code, and an answer of api/errors.py.
    answers, _ = collect()
    assert Answer(409, "invalid_request_error", "conflict") in answers
    assert Answer(409, "invalid_request_error", "number_already_assigned") in answers
    assert Answer(400, "invalid_request_error", "invalid_json") in answers
    assert Answer(500, "api_error", "internal_error") in answers
    assert Answer(502, "carrier_error", "carrier_error") in answers
