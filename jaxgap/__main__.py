"""``python -m jaxgap``: the ``jaxgap`` command (see :mod:`jaxgap.cli`)."""

from jaxgap.cli import main

raise SystemExit(main())
