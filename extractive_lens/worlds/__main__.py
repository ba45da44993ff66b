"""``python -m extractive_lens.worlds``: build the default world model, run the experiments."""

from extractive_lens.cli.worlds import main

raise SystemExit(main())
