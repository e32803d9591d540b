#!/usr/bin/env python3
"""Command line of the netns lab: `.venv/bin/python netns-lab/lab.py --help` (needs root)."""

import sys
from pathlib import Path

# Run as a script, netns-lab/ is not on sys.path when started from elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nslab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
