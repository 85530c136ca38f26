"""Entry point of the benchmark children: ``python child.py module:function '{json kwargs}'``.

Started by :func:`harness.run_child`. It imports nothing but the module it is told to (so
that, for instance, the import benchmark starts without taskrunner loaded), calls the
function and prints its JSON-ready result as the last line of its output.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    """Call ``argv[0]`` ("module:function") with the keyword arguments in ``argv[1]``."""
    module_name, _, func_name = argv[0].partition(":")
    kwargs = json.loads(argv[1]) if len(argv) > 1 else {}
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(**kwargs)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
