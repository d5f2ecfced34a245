"""The simulated caller's script format, from the one place the rest of the code imports it
(the carrier simulator owns it; docs/carrier.md, "Scripts")."""

from __future__ import annotations

from talkturo.simcaller.scripts import Script, ScriptError, parse_script

__all__ = ["Script", "ScriptError", "parse_script"]
