"""`python -m modeling_agqg COMMAND ...` (e.g. under `accelerate launch -m modeling_agqg score ...`): the `agqg` CLI."""

import sys

from .tools.cli import main

sys.exit(main())
