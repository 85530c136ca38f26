"""``python -m taskrunner``: see :mod:`taskrunner.tools.cli`."""

from taskrunner.tools.cli import main

raise SystemExit(main())
