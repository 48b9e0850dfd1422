"""Entry point of the frozen bundle.

One script serves both executables of the bundle: ``cnndesk-cli`` (or
``cnndesk cli …``) runs the command line, ``cnndesk`` opens the window
(``cnndesk --selftest`` checks the installation headless).
"""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    program = os.path.splitext(os.path.basename(sys.executable))[0].lower()
    if program == "cnndesk-cli" or (len(sys.argv) > 1 and sys.argv[1] == "cli"):
        from cnndesk.cli import main as cli_main

        args = sys.argv[2:] if program != "cnndesk-cli" else sys.argv[1:]
        sys.exit(cli_main(args))
    from cnndesk.app import main

    sys.exit(main())
