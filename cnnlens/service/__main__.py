"""`python -m cnnlens.service [--host H] [--port P] [--config FILE]`."""

from cnnlens.service.server import main

main()
