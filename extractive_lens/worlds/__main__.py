"""``python -m extractive_lens.worlds``: build the default world model, run the experiments."""

from extractive_lens.worlds.cli import main

raise SystemExit(main())
