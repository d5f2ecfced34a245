"""The carrier simulator: a local phone network that speaks Twilio's REST API and webhooks.

Part of the product (the local platform runs it; see docs/carrier.md), not a test helper. The
same twilio SDK calls the carrier adapter makes against Twilio work against it.
"""

from talkturo.local.carrier_sim.network import BEHAVIOURS, Callee, Network
from talkturo.local.carrier_sim.server import CarrierSimulator, SimulatorError, generate_credentials

__all__ = [
    "BEHAVIOURS",
    "Callee",
    "CarrierSimulator",
    "Network",
    "SimulatorError",
    "generate_credentials",
]
