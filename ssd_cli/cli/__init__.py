"""The `ssd` command line: thin commands that parse options, call the Python API / engine and render.

One module per command group, registered on the Typer app of cli/app.py when imported here, in the
order `ssd --help` lists them. Only this layer prints (cli/render.py).
"""

from ssd_cli.cli.app import app, run
from ssd_cli.cli import train  # noqa: F401, I001  (pretrain, train)
from ssd_cli.cli import score  # noqa: F401  (score, info)
from ssd_cli.cli import export  # noqa: F401
from ssd_cli.cli import evaluate  # noqa: F401
from ssd_cli.cli import benchmark  # noqa: F401

__all__ = ["app", "run"]
