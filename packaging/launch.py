"""Entry point of the frozen app: `cnndesk` opens the window, `cnndesk cli …` runs the command line."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    if len(sys.argv) > 1 and sys.argv[1] == "cli":
        from cnndesk.cli import main as cli_main

        sys.exit(cli_main(sys.argv[2:]))
    from cnndesk.app import main

    sys.exit(main())
