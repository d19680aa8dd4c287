#!/usr/bin/env python3
"""Ctrl-C at random moments of a node's start-up and life, many times: how each run ended.

Starts the installed console script (``detect_node`` with config/detect.yaml on CPU, or ``track_node``)
again and again, sends SIGINT after a random delay, and counts exit statuses. A quiet stop is status 0
(stopped while spinning), 130 (during imports or while the node was being built) or -2 (killed by the
signal before Python installed its handler); anything else, a traceback in the output, or a process
still alive 30 s after the signal is a failure, printed with the end of its output. ``--hog`` keeps one
core busy meanwhile, which widens the races between the signal and start-up.

    .venv/bin/python scripts/sigint_stress.py detect_node --runs 60 --hog
    .venv/bin/python scripts/sigint_stress.py track_node --runs 60 --hog --max-delay 1.5

DDS stays on loopback in a domain of its own (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUIET = (0, 130, -signal.SIGINT)


def _hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def node_command(node: str) -> list[str]:
    """The console script as a user starts it: detect_node with the shipped parameters, on CPU."""
    cmd = [str(BIN / node)]
    if node == "detect_node":
        cmd += ["--ros-args", "--params-file", str(REPO / "config" / "detect.yaml"), "-p", "device:=cpu"]
    return cmd


def one_run(cmd: list[str], env: dict[str, str], delay: float) -> tuple[str, str | None]:
    """SIGINT ``delay`` s after start; returns (outcome, output when it failed)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return "hung", out
    took = time.monotonic() - t0
    if proc.returncode not in QUIET or "Traceback" in out:
        return f"status {proc.returncode}", out
    return f"status {proc.returncode} ({'<1' if took < 1 else '>=1'} s)", None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("node", choices=("detect_node", "track_node"))
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--min-delay", type=float, default=0.05)
    ap.add_argument("--max-delay", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hog", action="store_true", help="keep one core busy meanwhile")
    args = ap.parse_args()
    cmd = node_command(args.node)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0",
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(random.SystemRandom().randint(150, 200))))
    hog = multiprocessing.Process(target=_hog, args=(24 * 3600,), daemon=True) if args.hog else None
    if hog:
        hog.start()
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    try:
        for i in range(args.runs):
            delay = rng.uniform(args.min_delay, args.max_delay)
            outcome, failure = one_run(cmd, env, delay)
            outcomes[outcome] += 1
            if failure is not None:
                print(f"run {i}: SIGINT after {delay:.2f} s: {outcome}\n{failure[-3000:]}", flush=True)
    finally:
        if hog:
            hog.terminate()
    print(f"{args.node}, {args.runs} runs, SIGINT after {args.min_delay:g}-{args.max_delay:g} s"
          f"{', one core hogged' if args.hog else ''}: "
          + ", ".join(f"{n} × {k}" for k, n in sorted(outcomes.items())))
    failed = sum(n for k, n in outcomes.items() if not k.startswith("status") or "(" not in k)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
