"""python -m scripts.report: see __init__.py."""
if __name__ == "__main__":  # Ctrl-C while torch and matplotlib import, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("report: interrupted while starting; nothing written")

import sys

from .command import get_args_parser, main

if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main(get_args_parser().parse_args()))
