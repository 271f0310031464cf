"""Entry script for the frozen build (PyInstaller runs this as __main__)."""

import multiprocessing
import sys

from app.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # transcoding uses a process pool
    sys.exit(main())
