"""`python -m data_gen`: generate, inspect, export-csv, ambiguity.

Thin: parse arguments, call one function, print. Every user mistake ends as
one line on stderr and exit code 2, never a library traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time

from iklab.kinematics import DEFAULT_ROBOT, RobotError, load_robot
from iklab.regions import custom_region, region_preset

from .ambiguity import DEFAULT_POSES, DEFAULT_STARTS, measure_ambiguity
from .dataset import DatasetError, column_stats, read_card, split_counts, verify
from .export import export_csv
from .generate import DEFAULT_PART_ROWS, SplitFractions, generate

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_region_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", default=DEFAULT_ROBOT, help="roboticstoolbox DH model name (default jaco)")
    parser.add_argument(
        "--region",
        default=None,
        help="region preset: 'full' (joint limits) or 'working' (default where the robot has one)",
    )
    parser.add_argument("--lower", type=_float_list, help="custom lower bounds, 6 comma-separated radians")
    parser.add_argument("--upper", type=_float_list, help="custom upper bounds, 6 comma-separated radians")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m data_gen", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = commands.add_parser("generate", help="sample joints, run FK, write Parquet parts and card.json")
    _add_region_arguments(gen)
    gen.add_argument("--n", type=int, required=True, help="number of rows (e.g. 5000000)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="output directory, e.g. data/jaco-5M")
    gen.add_argument(
        "--part-rows",
        type=int,
        default=DEFAULT_PART_ROWS,
        help=f"rows per Parquet part; bounds memory (default {DEFAULT_PART_ROWS})",
    )
    gen.add_argument(
        "--split", type=_float_list, default=[0.8, 0.1, 0.1], help="train,val,test fractions (default 0.8,0.1,0.1)"
    )
    gen.add_argument(
        "--ambiguity",
        action="store_true",
        help="measure the region's ambiguity (under a minute) and record it in the card",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an existing output directory")

    ins = commands.add_parser("inspect", help="print the card, split sizes, column statistics; verify checksums")
    ins.add_argument("directory")

    exp = commands.add_parser("export-csv", help="write the original question's CSV layout")
    exp.add_argument("directory")
    exp.add_argument("out", help="CSV file to write")
    exp.add_argument("--header", action="store_true", help="write a header row (state0..5, pose0..5)")
    exp.add_argument("--overwrite", action="store_true")

    amb = commands.add_parser("ambiguity", help="measure how multi-valued IK is on a region")
    _add_region_arguments(amb)
    amb.add_argument("--poses", type=int, default=DEFAULT_POSES, help=f"sampled poses (default {DEFAULT_POSES})")
    amb.add_argument(
        "--starts", type=int, default=DEFAULT_STARTS, help=f"random IK starts per pose (default {DEFAULT_STARTS})"
    )
    amb.add_argument(
        "--threshold-deg",
        type=float,
        default=5.0,
        help="max joint difference that makes a second solution distinct (default 5)",
    )
    amb.add_argument("--seed", type=int, default=0)
    amb.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _region(args):
    robot = load_robot(args.robot)
    if (args.lower is None) != (args.upper is None):
        raise ValueError("give both --lower and --upper, or neither")
    if args.lower is not None:
        if args.region is not None:
            raise ValueError("give either --region or --lower/--upper, not both")
        return robot, custom_region(robot, args.lower, args.upper)
    return robot, region_preset(robot, args.region)


def cmd_generate(args) -> None:
    robot, region = _region(args)
    fractions = SplitFractions(*args.split) if len(args.split) == 3 else None
    if fractions is None:
        raise ValueError(f"--split needs three fractions (train,val,test), got {args.split}")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    ambiguity = None
    if args.ambiguity:
        ambiguity = measure_ambiguity(robot, region, progress=sys.stderr.isatty()).to_dict()
    started = time.perf_counter()
    out = generate(
        robot,
        region,
        args.n,
        args.seed,
        args.out,
        part_rows=args.part_rows,
        fractions=fractions,
        overwrite=args.overwrite,
        ambiguity=ambiguity,
    )
    print(f"wrote {args.n} rows ({robot.name}, region {region.name}) to {out} in {time.perf_counter() - started:.1f} s")


def cmd_inspect(args) -> None:
    card = read_card(args.directory)
    print(json.dumps({k: v for k, v in card.items() if k != "files"}, indent=2))
    verify(args.directory, card)
    print(f"\nparts: {len(card['files'])}, all sha256 verified")
    counts = split_counts(args.directory, card)
    print("rows per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" (total {sum(counts.values())})")
    print(f"\n{'column':<8}{'min':>14}{'mean':>14}{'max':>14}")
    for column, stats in column_stats(args.directory, card).items():
        print(f"{column:<8}{stats['min']:>14.6f}{stats['mean']:>14.6f}{stats['max']:>14.6f}")


def cmd_export_csv(args) -> None:
    rows = export_csv(args.directory, args.out, header=args.header, overwrite=args.overwrite)
    print(f"wrote {rows} rows to {args.out}")


def cmd_ambiguity(args) -> None:
    robot, region = _region(args)
    result = measure_ambiguity(
        robot,
        region,
        n_poses=args.poses,
        n_starts=args.starts,
        threshold_deg=args.threshold_deg,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    bounds = ", ".join(
        f"[{math.degrees(lo):.0f}, {math.degrees(hi):.0f}]" for lo, hi in zip(region.lower, region.upper)
    )
    print(f"{robot.name} region {region.name}: joints (deg) {bounds}")
    print(
        f"ambiguous poses: {100 * result.ambiguous_fraction:.2f}% of {result.n_poses} "
        f"(second in-region solution > {result.threshold_deg:g} deg away)"
    )
    print(
        f"distinct in-region solutions per pose: {result.mean_distinct_solutions:.2f}; "
        f"IK starts that reached the pose: {100 * result.solve_success_rate:.1f}%; "
        f"{result.seconds:.1f} s"
    )


COMMANDS = {"generate": cmd_generate, "inspect": cmd_inspect, "export-csv": cmd_export_csv, "ambiguity": cmd_ambiguity}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    try:
        COMMANDS[args.command](args)
    except (RobotError, DatasetError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"data_gen {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"data_gen {args.command}: interrupted, nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
