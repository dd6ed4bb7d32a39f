"""`python -m watchdog`: run | check-config | score | replay | collect | demo | feedback | calibrate."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from watchdog import signals

# before the heavy imports below: a reload asked for while the daemon starts is kept for it
if next((a for a in sys.argv[1:] if not a.startswith("-")), None) == "run":
    signals.hold_reloads()

from watchdog import __version__, redact  # noqa: E402 - after the handler, on purpose
from watchdog.commands import calibrate, check_config, collect, demo, feedback, replay, run, score
from watchdog.config import ConfigError
from watchdog.detection.bundle import BundleError
from watchdog.detection.model import drop_runtime_banner
from watchdog.errors import UsageError

logger = logging.getLogger("watchdog")

COMMANDS = (run, check_config, score, replay, collect, demo, feedback, calibrate)


class _Parser(argparse.ArgumentParser):
    """Its commands' parsers too (argparse makes them of their parent's class)."""

    def error(self, message: str) -> NoReturn:
        """One line and exit code 2, naming the help to read (argparse prints its whole usage
        block otherwise: 4 to 6 lines for one wrong flag)."""
        # masked: a camera's URL typed where a command goes is quoted back whole
        print(
            redact.secret_filter.mask(f"error: {message} (see {self.prog} --help)"), file=sys.stderr
        )
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    # as it was called: the installed command, or the module
    called = Path(sys.argv[0]).name
    prog = "printer-watchdog" if called == "printer-watchdog" else "python -m watchdog"
    parser = _Parser(prog=prog, description=__doc__)
    parser.add_argument("--version", action="version", version=f"printer-watchdog {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="debug logging and tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def setup_logging(debug: bool) -> None:
    # stderr, one line per event: journald adds its own timestamps under systemd.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redact.install()  # secrets masked in every log line, urllib3's request lines kept out


def quiet_opencv(debug: bool) -> None:
    """OpenCV's and FFmpeg's own lines on a camera or file they cannot read ("[ WARN:0@0.16]
    global cap.cpp:212 open VIDEOIO(V4L2) ...", "[mjpeg @ 0x55...] No JPEG data found") are
    library jargon beside our own one-line reason; --debug keeps them."""
    if debug:
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    try:  # not in every OpenCV build (the older one beside tflite-runtime): then left as it is
        from cv2.utils import logging as cv_logging

        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    quiet_opencv(args.debug)
    if args.command != "run":
        drop_runtime_banner()
        if sys.stdout is None:  # started with >&-: print() drops every result without a word
            print("error: standard output is closed: nothing could be written", file=sys.stderr)
            return 2
        sys.stdout = _NamedOutput(sys.stdout)
        if sys.stderr is not None:
            sys.stderr = _MaskedErrors(sys.stderr)
    try:
        code = int(args.func(args) or 0)
        if isinstance(sys.stdout, _NamedOutput):  # written now, where its failure is said:
            sys.stdout.flush()  # at exit Python would only print its traceback (exit 120)
        return code
    except (ConfigError, BundleError, UsageError) as exc:
        if args.debug:
            logger.exception("fatal")
        print(f"error: {redact.secret_filter.mask(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output's reader went away (`replay ... | head`): not an error
        _drop_unwritten_output()
        return 141
    except OSError as exc:  # a folder or file given on the command line: missing, not writable
        if args.debug:
            logger.exception("fatal")
        where = f" {exc.filename}" if exc.filename else ""
        print(
            redact.secret_filter.mask(f"error: cannot use{where}: {exc.strerror or exc}"),
            file=sys.stderr,
        )
        if exc.filename == STANDARD_OUTPUT:
            _drop_unwritten_output()
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # a bug: its traceback, masked as every line a command prints
        print(redact.secret_filter.mask(traceback.format_exc()), end="", file=sys.stderr)
        return 1
    finally:
        if isinstance(sys.stdout, _NamedOutput):
            sys.stdout = sys.stdout.stream
        if isinstance(sys.stderr, _MaskedErrors):
            sys.stderr = sys.stderr.stream


def _drop_unwritten_output() -> None:
    """What the standard output could not take is dropped: Python would try it again at exit
    and print a traceback over the one line already said."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


STANDARD_OUTPUT = "the standard output"


class _NamedOutput:
    """A command's standard output whose failures say it is the output that failed
    (``> /dev/full``, a full disk): Python's error names no file, and "cannot use: No space
    left on device" left the owner guessing which of the command's files it was."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(_encodable(text, self.stream))
        except OSError as exc:
            raise _named(exc) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise _named(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _MaskedErrors:
    """A command's standard error with every secret masked, whoever prints to it: a camera's
    URL given where a folder or file is expected was shown back as a path, password and all
    ("rtsp:/admin:<password>@..."), by the lines each command prints of a file it cannot read."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(_encodable(redact.secret_filter.mask(text), self.stream))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _encodable(text: str, stream: TextIO) -> str:
    """``text`` as ``stream`` can write it: a name the terminal's encoding lacks ("mb印" under
    PYTHONIOENCODING=ascii) written escaped, not a traceback after the work was done."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    return text


def _named(exc: OSError) -> OSError:
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror, STANDARD_OUTPUT)


if __name__ == "__main__":
    sys.exit(main())
