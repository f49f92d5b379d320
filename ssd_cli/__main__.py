from ssd_cli.cli import run

run()
