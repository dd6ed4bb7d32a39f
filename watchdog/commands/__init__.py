"""One module per `python -m watchdog` sub-command: each has add_parser(subparsers)."""
