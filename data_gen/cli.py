"""`python -m data_gen`: generate, inspect, export-csv, ambiguity, region.

Thin: parse arguments, call one function, print. Every user mistake ends as
one line on stderr and exit code 2, never a library traceback; an OS error
(e.g. a full disk) is one line naming the path, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
import time
from pathlib import Path

from iklab.core.kinematics import DEFAULT_ROBOT, RobotError, load_robot
from iklab.core.regions import custom_region, region_preset

from .ambiguity import DEFAULT_POSES, DEFAULT_STARTS, measure_ambiguity
from .dataset import DatasetError, column_stats, read_card, split_counts, verify
from .export import export_csv
from .generate import DEFAULT_PART_ROWS, OutputError, SplitFractions, check_replaceable, check_writable, generate
from .region import DEFAULT_SAMPLES, find_region, region_text, write_atomically

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# A value such as "-1.5,0,0,0,0,0": argparse would take it for an option (it only
# recognizes plain negative numbers as values), so main() joins it to its option.
_NEGATIVE_VALUE = re.compile(r"-\.?\d")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--robot",
        default=DEFAULT_ROBOT,
        help="roboticstoolbox DH model name (default jaco), or a path to your arm's .urdf/.xacro file",
    )
    parser.add_argument("--base", default=None, help="URDF only: the chain's base link (default: the root link)")
    parser.add_argument("--ee", default=None, help="URDF only: the end-effector link (default: the chain's one end)")


def _add_region_arguments(parser: argparse.ArgumentParser) -> None:
    _add_robot_arguments(parser)
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
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing iklab dataset or empty directory (never other files)",
    )

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
    reg = commands.add_parser("region", help="find a single-branch working region (a joint box) for an arm")
    _add_robot_arguments(reg)
    reg.add_argument(
        "--max-ambiguity",
        type=float,
        default=1.0,
        help="largest share of poses with a second solution in the box, percent (default 1)",
    )
    reg.add_argument(
        "--samples", type=int, default=DEFAULT_SAMPLES, help=f"det J scan samples (default {DEFAULT_SAMPLES})"
    )
    reg.add_argument("--poses", type=int, default=500, help="poses per candidate's ambiguity (default 500)")
    reg.add_argument("--starts", type=int, default=32, help="IK starts per pose for candidates (default 32)")
    reg.add_argument("--verify-poses", type=int, default=2000, help="fresh poses for the winner (default 2000)")
    reg.add_argument("--seed", type=int, default=0)
    reg.add_argument("--out", default=None, help="also write the experiment file's data block to this YAML file")
    reg.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.value_options = {
        option
        for sub in (gen, ins, exp, amb, reg)
        for action in sub._actions
        if action.nargs != 0
        for option in action.option_strings
    }
    return parser


# (option, lowest allowed value, whether the lowest is excluded): checked before any work
_NUMBER_RULES = {
    "n": ("--n", 1, False),
    "seed": ("--seed", 0, False),
    "part_rows": ("--part-rows", 1, False),
    "poses": ("--poses", 1, False),
    "starts": ("--starts", 1, False),
    "threshold_deg": ("--threshold-deg", 0, True),
    "samples": ("--samples", 1000, False),
    "verify_poses": ("--verify-poses", 1, False),
    "max_ambiguity": ("--max-ambiguity", 0, True),
}


def _check_numbers(args) -> None:
    """ValueError naming the option for a number that makes no sense (negative, zero, NaN)."""
    for name, (option, lowest, exclusive) in _NUMBER_RULES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < lowest or (exclusive and value == lowest):
            bound = f"greater than {lowest}" if exclusive else f"at least {lowest}"
            raise ValueError(f"{option} must be {bound}, got {value}")
    if getattr(args, "threshold_deg", 0) >= 180:  # wrapped joint differences never exceed 180
        raise ValueError(f"--threshold-deg must be below 180, got {args.threshold_deg}")
    if getattr(args, "max_ambiguity", 0) >= 100:
        raise ValueError(f"--max-ambiguity is a percentage below 100, got {args.max_ambiguity}")
    if getattr(args, "split", None) is not None:
        if len(args.split) != 3:
            raise ValueError(f"--split needs three fractions (train,val,test), got {args.split}")
        try:
            SplitFractions(*args.split)
        except ValueError as exc:
            raise ValueError(f"--split: {exc}") from None


def _region(args):
    robot = load_robot(args.robot, args.base, args.ee)
    if (args.lower is None) != (args.upper is None):
        raise ValueError("give both --lower and --upper, or neither")
    if args.lower is not None:
        if args.region is not None:
            raise ValueError("give either --region or --lower/--upper, not both")
        return robot, custom_region(robot, args.lower, args.upper)
    return robot, region_preset(robot, args.region)


def cmd_generate(args) -> None:
    check_replaceable(Path(args.out), args.overwrite)  # before loading the robot (~3 s) and
    check_writable(Path(args.out))  # before measuring ambiguity (a minute)
    robot, region = _region(args)
    fractions = SplitFractions(*args.split)
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
        f"[{math.degrees(lo):.0f}, {math.degrees(hi):.0f}]" for lo, hi in zip(region.lower, region.upper, strict=True)
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


def cmd_region(args) -> None:
    if args.out is not None and Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")  # before minutes of work
    robot = load_robot(args.robot, args.base, args.ee)
    found = find_region(
        robot,
        max_ambiguity=args.max_ambiguity / 100,
        samples=args.samples,
        poses=args.poses,
        starts=args.starts,
        verify_poses=args.verify_poses,
        seed=args.seed,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    text = region_text(found, args.robot, args.base, args.ee)
    print(text, end="")
    if args.out is not None:
        write_atomically(Path(args.out), text)
        print(f"# written to {args.out}", file=sys.stderr)


COMMANDS = {
    "generate": cmd_generate,
    "inspect": cmd_inspect,
    "export-csv": cmd_export_csv,
    "ambiguity": cmd_ambiguity,
    "region": cmd_region,
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--lower -1.5,0,...`` -> ``--lower=-1.5,0,...`` for every option that takes a value."""
    joined, index = [], 0
    while index < len(argv):
        token = argv[index]
        if token in parser.value_options and index + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[index + 1]):
            joined.append(f"{token}={argv[index + 1]}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def _os_error_line(exc: OSError) -> str:
    if exc.errno is None or isinstance(exc, OutputError):
        return str(exc)  # our own message, already naming the path and what to do
    reason = exc.strerror or str(exc).splitlines()[0]
    return f"{exc.filename}: {reason}" if exc.filename else reason


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(parser, sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    try:
        _check_numbers(args)
        COMMANDS[args.command](args)
    except (RobotError, DatasetError, ValueError) as exc:
        print(f"data_gen {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # one line naming the path; a user's bad path is a usage error
        print(f"data_gen {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        user_mistake = getattr(exc, "user_mistake", exc.errno is None)
        return EXIT_USAGE if user_mistake else EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"data_gen {args.command}: interrupted, nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
