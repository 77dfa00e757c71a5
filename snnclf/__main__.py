"""The ``snnclf`` command (and ``python -m snnclf``): Ctrl-C is one line and exit 130 from the first
instant, while the command line's modules (torch among them: seconds on a busy machine) are still
being imported; then the command line runs, and its commands handle Ctrl-C themselves."""
import os
import signal
import sys


def _interrupted(signum, frame):
    """Nothing is written while the modules load: stop at once, without a traceback (a
    KeyboardInterrupt raised inside an import can end in another error)."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    os.write(2, f"snnclf{' ' + command if command else ''}: interrupted\n".encode())
    os._exit(130)


def main(argv=None):
    before = signal.getsignal(signal.SIGINT)
    if before is signal.default_int_handler:  # left alone where Ctrl-C is ignored (nohup, &)
        signal.signal(signal.SIGINT, _interrupted)
    from .cli import main as run

    signal.signal(signal.SIGINT, before)
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
