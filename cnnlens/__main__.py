"""`python -m cnnlens ...`: the `cnnlens` console script."""

from cnnlens.cli import main

raise SystemExit(main())
