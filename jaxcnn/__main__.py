"""Command line: python -m jaxcnn summary MODEL [--input-shape H,W,C] [--batch N] [--json]."""
import argparse
import json
import sys

from . import zoo
from .cli import entry, fail
from .layers import LayerError
from .summary import summary


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected H,W,C as three positive ints, e.g. 32,32,1; got {text!r}")
    return shape


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jaxcnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("summary", help="per-layer shapes, parameters, memory and FLOPs of a zoo model",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", choices=sorted(zoo.MODELS), help="the zoo model to summarise")
    p.add_argument("--input-shape", type=_shape, help="per-example H,W,C (default: the model's training size)")
    p.add_argument("--batch", type=int, default=1, help="batch size for the training-step memory estimate")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be a positive int, got {args.batch}")

    net = zoo.get(args.model)
    try:
        result = summary(net, args.input_shape, batch=args.batch)
    except LayerError as e:
        shape = args.input_shape or net.input_shape
        fail(f"{args.model} with --input-shape {','.join(map(str, shape))}: {e}")
    print(json.dumps(result.to_dict(), indent=1) if args.json else result)


if __name__ == "__main__":
    sys.exit(entry(main))
