"""``python -m lvmref`` — same as the ``lvmref`` console script."""

from .cli import main

raise SystemExit(main())
