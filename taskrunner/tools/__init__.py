"""Tools around the library: the CLI, renderers, the debugger, the stress runner."""
