"""The simulated caller's script format (talkturo.simcaller, docs/carrier.md "Scripts"), from the
one place the test runs import it: should the format move again, only this line changes."""

from __future__ import annotations

from talkturo.simcaller.scripts import LastLine, Script, ScriptError, parse_script

__all__ = ["LastLine", "Script", "ScriptError", "parse_script"]
