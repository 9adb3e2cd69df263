"""``python -m fitbridge``: the command line (see :mod:`fitbridge.cli`)."""

from fitbridge.cli import main

raise SystemExit(main())
