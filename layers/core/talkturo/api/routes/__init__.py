"""HTTP routes: each parses, calls one service function, and shapes the answer."""
