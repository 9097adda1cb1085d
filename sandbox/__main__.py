"""`python -m sandbox`: the same server as `manage.py sandbox`, without Django."""

import argparse

from .server import serve

parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
parser.add_argument("--topology", help="topology YAML (default: topology/nemo.yaml)")
parser.add_argument("--speed", type=float, default=1.0, help="simulated s per real s")
parser.add_argument("--boot-time", type=float, default=20.0, help="simulated s per VM boot")
parser.add_argument("--snapshot", help="JSON file to restore the state from and save to")
parser.add_argument("--verbose", action="store_true", help="log every request")

if __name__ == "__main__":
    serve(**vars(parser.parse_args()))
