"""`python -m sandbox`: the same server as `manage.py sandbox`, without Django."""

import argparse

from .server import add_arguments, serve

parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
add_arguments(parser)

if __name__ == "__main__":
    serve(**vars(parser.parse_args()))
