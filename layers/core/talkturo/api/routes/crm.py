"""The CRM's routes in one router: companies, contacts, custom fields, contact imports."""

from __future__ import annotations

from fastapi import APIRouter

from talkturo.api.routes import companies, contact_imports, contacts, custom_fields

router = APIRouter()
for module in (companies, contacts, custom_fields, contact_imports):
    router.include_router(module.router)
