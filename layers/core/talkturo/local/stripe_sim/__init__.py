"""The Stripe simulator: the Stripe API subset the platform calls, a hosted payment page, and
webhooks signed as Stripe signs them.

Part of the product (the local platform runs it; see docs/billing.md), not a test helper. The
same `stripe` SDK calls the billing adapter makes against Stripe work against it.
"""

from talkturo.local.stripe_sim.server import SimulatorError, StripeSimulator
from talkturo.local.stripe_sim.state import TEST_CARDS
from talkturo.local.stripe_sim.webhooks import Switches

__all__ = ["TEST_CARDS", "SimulatorError", "StripeSimulator", "Switches"]
