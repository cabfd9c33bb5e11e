"""`python -m kfcn VERB ...`, the same as the `kfcn` command."""

import sys

from kfcn.cli import main

sys.exit(main())
