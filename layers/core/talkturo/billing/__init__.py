"""Payments: the Stripe adapter (gateway), and where the platform finds its settings (factory).

Only this package imports the `stripe` SDK (ARCHITECTURE.md: only the billing adapter touches
Stripe); the rest of the platform speaks talkturo.domain.billing's types.
"""
