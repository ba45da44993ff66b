"""``python -m extractive_lens.cli``: the ``extractive-lens`` command."""

from extractive_lens.cli import main

raise SystemExit(main())
