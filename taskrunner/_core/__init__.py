"""The core supervisor: tasks, their handles, the record stream (private)."""
