"""The lazily built per-module apps serve exactly the routes of the whole API."""

from __future__ import annotations

from fastapi import FastAPI

from talkturo.api.app import ROUTE_MODULES, LazyApi, create_app, route_module_for


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) an app serves, from its own OpenAPI document."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


def test_every_route_belongs_to_exactly_the_module_that_serves_it() -> None:
    # Given the whole API and each module's own app
    whole = _routes(create_app()) - {("GET", "/health")}
    per_module = {
        name: _routes(create_app([name])) - {("GET", "/health")} for name in ROUTE_MODULES
    }

    assert len(whole) > 30
    # Then each route of the whole API is found by its path in the module that declares it
    for method, path in whole:
        module = route_module_for(path)
        assert module is not None, f"{method} {path} matches no entry of ROUTE_MODULES"
        assert (method, path) in per_module[module], f"{method} {path} is not in {module}"
    # And the modules together serve nothing more than the whole API
    assert set().union(*per_module.values()) == whole


def test_prefixes_match_whole_path_segments() -> None:
    assert route_module_for("/v1/contacts/ct_1") == "contacts"
    assert route_module_for("/v1/contact-imports/imp_1/errors") == "contact_imports"
    assert route_module_for("/v1/accounts") is None
    assert route_module_for("/docs") is None


def test_lazy_api_builds_each_app_once_and_the_whole_api_for_docs() -> None:
    api = LazyApi()
    contacts = api.app_for("/v1/contacts")
    assert api.app_for("/v1/contacts/ct_1") is contacts
    assert ("GET", "/v1/account") not in _routes(contacts)
    assert _routes(api.app_for("/docs")) == _routes(create_app())
    assert _routes(api.app_for("/health")) == {("GET", "/health")}
