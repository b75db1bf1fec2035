"""`python -m bench` runs the movibench command line."""

from bench.cli.app import main

main()
