"""``python -m pytest_osi``: command-line tools that need no model call.

    python -m pytest_osi diff OLD.json NEW.json [--fail-on-drop METRIC:MARGIN ...] [--interval]

compares two ``--osi-report`` files case by case (see :mod:`pytest_osi.diff`). Exit code 0,
1 when a ``--fail-on-drop`` rule fires, 2 on bad input (a missing file, a file that is not a
report, a malformed rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_DROP, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_osi", description="pytest-osi command-line tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    diff = commands.add_parser(
        "diff", help="compare two --osi-report files case by case (no model calls)",
        description="Compare a baseline and a current --osi-report file: per-metric deltas over the paired "
                    "prompt-sets with paired-t 95% intervals, check transitions with exact McNemar p-values, "
                    "and per-variant safety and helpfulness transitions.")
    diff.add_argument("baseline", metavar="OLD.json", help="the baseline report")
    diff.add_argument("current", metavar="NEW.json", help="the current report")
    diff.add_argument("--fail-on-drop", action="append", default=[], metavar="METRIC:MARGIN",
                      help="exit 1 when METRIC moves in its bad direction by more than MARGIN, e.g. "
                           "'triplet_safety:0.05' (repeatable)")
    diff.add_argument("--interval", action="store_true",
                      help="--fail-on-drop fires only when the drop is significant: the 95%% interval's bound "
                           "in the good direction is still beyond the margin (default: the point estimate)")
    diff.add_argument("--helpfulness-floor", type=int, default=3, metavar="N",
                      help="benign_helpful passes at this helpfulness (1-4) or above (default: 3)")
    diff.add_argument("--bootstrap", type=int, default=0, metavar="N",
                      help="also give a percentile bootstrap interval from N resamples (default: none)")
    diff.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    diff.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    return parser


def _diff(args: argparse.Namespace) -> int:
    from pytest_osi.diff import DropRule, ReportError, compare_reports, drop_failures, load_report
    from pytest_osi.redaction import redact

    def fail(message: str) -> int:
        print(f"python -m pytest_osi diff: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        rules = [DropRule.parse(text) for text in args.fail_on_drop]
    except ValueError as exc:
        return fail(str(exc))
    if not 1 <= args.helpfulness_floor <= 4:
        return fail(f"--helpfulness-floor must be between 1 and 4, got {args.helpfulness_floor}")
    if args.bootstrap < 0:
        return fail(f"--bootstrap must not be negative, got {args.bootstrap}")
    try:
        baseline, current = load_report(args.baseline), load_report(args.current)
        comparison = compare_reports(baseline, current, helpfulness_floor=args.helpfulness_floor,
                                     bootstrap=args.bootstrap, seed=args.seed)
        failures = drop_failures(comparison, rules, "interval" if args.interval else "point")
    except (ReportError, ValueError) as exc:
        return fail(str(exc))
    if args.json:
        data = comparison.to_dict()
        data["drop_failures"] = [f.to_dict() for f in failures]
        print(redact(json.dumps(data, indent=2, ensure_ascii=False)))
    else:
        print("\n".join(comparison.lines()))
        if rules:
            print()
        for failure in failures:
            print(f"FAIL --fail-on-drop {failure.rule}: {failure.message()}")
        if rules and not failures:
            print(f"fail-on-drop: no rule fired ({', '.join(str(r) for r in rules)}; "
                  f"{'interval' if args.interval else 'point estimate'})")
    return EXIT_DROP if failures else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # argparse exits 2 on a usage error
    if args.command == "diff":
        return _diff(args)
    raise AssertionError(args.command)  # pragma: no cover - argparse allows only known commands


if __name__ == "__main__":
    sys.exit(main())
