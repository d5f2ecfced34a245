"""Webhooks from outside: the carrier's (Twilio) voice, status and AMD callbacks, and Stripe's
events (billing)."""
