"""``python -m htr.batch``: its command line is htr.cli.batch (run, not imported)."""

import runpy

runpy.run_module("htr.cli.batch", run_name="__main__", alter_sys=True)
