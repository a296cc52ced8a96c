"""``python -m worker``: the same as the ``gpu-worker`` console script."""

from worker.main import main

raise SystemExit(main())
