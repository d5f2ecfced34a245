"""Post-call analysis: (analysis configuration, transcript, context) → `AnalysisResult`.

A library without I/O of its own beyond the language model it is handed: the post-call worker
loads the call, calls `analyze`, and writes what it returns. See docs/analysis.md.
"""

from talkturo.analysis.engine import Models, analyze

__all__ = ["Models", "analyze"]
