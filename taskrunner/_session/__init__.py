"""The session runtime: the agent handler, its Context, one output stream (private)."""
