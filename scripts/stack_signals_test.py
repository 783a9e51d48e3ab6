"""`make run` and the stack `make test` starts stop everything they started on SIGINT, SIGTERM and SIGHUP
alike: each is started in a process group of its own (as a shell with job control, `timeout` or a process
supervisor starts it), sent the signal once all its services answer, and then none of its ports may have a
listener.

Usage: python stack_signals_test.py [run|test] [SIGINT|SIGTERM|SIGHUP]...   (from the repository root)
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

READY_SECONDS = 900
STOP_SECONDS = 60


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(mode: str, run_dir: str, log) -> subprocess.Popen:
    env = dict(os.environ, STACK_RUN_DIR=run_dir)
    if mode == "run":
        # Every port free-chosen: a `make run` serving beside the tests is never disturbed.
        env["STACK_FREE_PORTS"] = "1"
        command = ["make", "--no-print-directory", "run"]
    else:
        # What `make test` runs, with a command that only waits in place of the tests.
        command = ["bash", "scripts/stack.sh", "test", "bash", "-c", 'touch "$STACK_RUN_DIR/ready"; sleep 900']
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def ready(mode: str, run_dir: str, log_path: str) -> bool:
    if not os.path.exists(os.path.join(run_dir, "ports")):
        return False
    if mode == "run":
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            return "Add-on provider is running" in handle.read()
    return os.path.exists(os.path.join(run_dir, "ready"))


def check(mode: str, sig: signal.Signals) -> list:
    """The ports still listening after `sig`, or why the check could not run."""
    with tempfile.TemporaryDirectory() as run_dir:
        log_path = os.path.join(run_dir, "stack.out")
        with open(log_path, "w", encoding="utf-8") as log:
            process = start(mode, run_dir, log)
            deadline = time.monotonic() + READY_SECONDS
            while not ready(mode, run_dir, log_path):
                if process.poll() is not None or time.monotonic() > deadline:
                    os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
                    with open(log_path, encoding="utf-8", errors="replace") as handle:
                        return [f"{mode} never became ready:\n{handle.read()[-3000:]}"]
                time.sleep(0.5)
            with open(os.path.join(run_dir, "ports"), encoding="utf-8") as handle:
                ports = [int(line) for line in handle if line.strip()]
            # Once, then again while it stops: `make` forwards a SIGTERM to
            # its children, and supervisors repeat theirs.
            for _ in range(5):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                return [f"{mode} still running {STOP_SECONDS}s after {sig.name}"]
            # A service stopping may take a moment to close its socket.
            deadline = time.monotonic() + 10
            while any(listening(p) for p in ports) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = [p for p in ports if listening(p)]
            return [f"{mode} after {sig.name}: port {p} still has a listener" for p in left]


def main(modes: list, signals: list) -> int:
    failures = []
    for mode in modes:
        for sig in signals:
            found = check(mode, sig)
            print(f"stack_signals: {mode} {sig.name}: {'ok' if not found else 'FAILED'}", flush=True)
            failures += found
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    modes = [arg for arg in sys.argv[1:] if arg in ("run", "test")] or ["run", "test"]
    signals = [signal.Signals[arg] for arg in sys.argv[1:] if arg.startswith("SIG")] or [
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
    ]
    sys.exit(main(modes, signals))
