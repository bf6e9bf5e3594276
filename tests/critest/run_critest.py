"""Run critest against a cri-shim and print a per-spec summary with the failure messages.

    .venv/bin/python -m tests.critest.run_critest --endpoint unix:///tmp/dev/cri.sock
    .venv/bin/python -m tests.critest.run_critest --private --focus 'Container runtime'
    .venv/bin/python -m tests.critest.run_critest --junit old-report.xml   # no run, just read

--private starts a shim of its own (as tests/critest/test_critest.py does); otherwise the shim
at --endpoint must be running. --compare also prints the differences from expected.tsv."""

from __future__ import annotations

import argparse
import shutil
import sys

from tests.critest import suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="a running shim's CRI endpoint, unix:///...")
    where.add_argument("--private", action="store_true", help="start a private shim")
    where.add_argument("--junit", help="summarise an existing JUnit report instead of running")
    parser.add_argument("--focus", help="--ginkgo.focus regular expression")
    parser.add_argument("--skip", help="--ginkgo.skip regular expression")
    parser.add_argument("--output", help="also write the summary to this file")
    parser.add_argument("--keep-report", help="copy the JUnit report here")
    parser.add_argument("--compare", action="store_true", help="diff against expected.tsv")
    parser.add_argument("--no-images", action="store_true", help="skip critest-images.sh")
    args = parser.parse_args(argv)

    if args.junit:
        results = suite.parse_junit(args.junit)
        log_note = ""
    else:
        reason = suite.critest_available()
        if reason:
            print(reason, file=sys.stderr)
            return 2
        if not args.no_images:
            suite.prepare_images()
        if args.private:
            with suite.private_shim() as shim:
                run = suite.run_critest(shim.endpoint, args.focus, args.skip)
        else:
            run = suite.run_critest(args.endpoint, args.focus, args.skip)
        if args.keep_report and run.results:
            shutil.copy(run.report, args.keep_report)
        if not run.results:
            print(run.output[-5000:])
            print(f"critest wrote no JUnit report (exit {run.returncode})", file=sys.stderr)
            return 2
        results = run.results
        log_note = (
            f"critest run took {run.seconds:.0f}s (exit {run.returncode}), report {run.report}"
        )

    text = suite.format_summary(results)
    if log_note:
        text = f"{log_note}\n{text}"
    if args.compare:
        differences = suite.compare(
            suite.load_expected(), results, partial=bool(args.focus or args.skip)
        )
        text += f"\n\n{len(differences)} differences from expected.tsv\n"
        text += suite.format_differences(differences)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
