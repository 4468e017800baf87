#!/usr/bin/env python3
"""Hello test: print a greeting and the parameters, write them to hello.txt (stdlib only)."""
import argparse
import datetime
import json
import os
import platform
import sys
import time

CLOSING = {"en": "Goodbye!", "ru": "До свидания!", "fr": "Au revoir !"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--greeting", default="Hello")
    parser.add_argument("--who", default="world")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--language", choices=sorted(CLOSING), default="en")
    parser.add_argument("--also", action="append", choices=["date", "host", "python"], default=[])
    parser.add_argument("--shout", action="store_true")
    parser.add_argument("--input", help="a text file whose first line is printed")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 1000 or not 0 <= args.pause <= 60:
        parser.error("--repeat must be 1..1000 and --pause 0..60 seconds")
    lines = []
    for i in range(args.repeat):
        line = f"{args.greeting}, {args.who}!"
        lines.append(line.upper() if args.shout else line)
        print(lines[-1], flush=True)
        if args.pause and i + 1 < args.repeat:
            time.sleep(args.pause)
    extras = {"date": datetime.date.today().isoformat(), "host": platform.node(), "python": platform.python_version()}
    for name in args.also:
        print(f"{name}: {extras[name]}", flush=True)
    if os.environ.get("NEBULAHUB_JOB_HOSTS"):  # a job with machines of its own
        print(f"machines: {os.environ['NEBULAHUB_JOB_HOSTS']}", flush=True)
    if args.input:
        try:
            with open(args.input, encoding="utf-8", errors="replace") as f:
                print(f"first line of {args.input}: {f.readline().rstrip()}", flush=True)
        except OSError as exc:
            print(f"error: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 1
    print(CLOSING[args.language], flush=True)
    with open("hello.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        f.write(json.dumps({k: v for k, v in vars(args).items()}, ensure_ascii=False, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
