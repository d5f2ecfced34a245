"""The simulated caller's script format (talkturo.simcaller, docs/carrier.md "Scripts"), from the
one place the test runs import it: should the format move again, only this line changes."""

from __future__ import annotations

from talkturo.simcaller.scripts import Script, ScriptError, parse_script

__all__ = ["Script", "ScriptError", "parse_script"]
