"""The `onchain` console script (and `python -m onchain`). The CLI is imported inside a guard:
Ctrl-C while it loads must be one line and exit 130, not a traceback."""

import os
import sys

INTERRUPTED = 130


def main() -> None:
    try:
        from onchain.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    cli_main()


if __name__ == "__main__":
    main()
