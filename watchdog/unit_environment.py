"""The environment systemd gives the service: its unit's ``Environment=`` and ``EnvironmentFile=``.

A config may name ``${VAR}`` (a token kept out of config.yaml), with the variable set in a
drop-in (``systemctl edit printer-watchdog``). The installer checks the config before it
restarts the service on an upgrade; checked without those variables, a config the service
runs with would be refused and the upgrade left waiting. So the installer runs::

    systemctl show -p Environment -p EnvironmentFiles printer-watchdog.service \\
        | python -m watchdog.unit_environment \\
        | runuser -u printer-watchdog -- python -m watchdog.unit_environment --exec -- CHECK...

The first step runs as root, as systemd reads environment files before it drops privileges,
and prints ``NAME=value`` assignments, each ended by a NUL byte; the second, as the service
user, adds them to its environment and becomes the check. The values travel in a pipe and
an environment, never in a command line or a shell variable (``ps`` and ``bash -x`` would
show them). As systemd applies them, files override ``Environment=``, later files earlier
ones; a file marked ``ignore_errors=yes`` (``EnvironmentFile=-...``) may be missing. A file
that cannot be read otherwise is named on stderr and left out: the check then says which
variable is not set.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from enum import Enum, auto
from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILE = re.compile(r"^(?P<path>.+?) \(ignore_errors=(?P<ignore>yes|no)\)$")
# what systemctl writes as a C escape inside a quoted value, and what systemd's environment
# files let a backslash take literally inside double quotes
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_SHELL_ESCAPED = '"\\`$'


def _assignment(text: str) -> tuple[str, str] | None:
    name, sep, value = text.partition("=")
    return (name, value) if sep and _NAME.fullmatch(name) else None


def show_words(value: str) -> list[str]:
    """The strings of a string-list property as ``systemctl show`` prints them: separated by
    spaces, one holding a space or a special character in double quotes with its ``"``, ``\\``,
    `````` and ``$`` escaped by a backslash and control characters as C escapes."""
    words: list[str] = []
    raw = bytearray()
    i, quoted, inside = 0, False, False
    while i < len(value):
        c = value[i]
        if c == '"' and not (inside and not quoted):
            quoted = not quoted
            inside = True
        elif c == " " and not quoted:
            if inside:
                words.append(raw.decode("utf-8", "surrogateescape"))
            raw, inside = bytearray(), False
        elif c == "\\" and quoted and i + 1 < len(value):
            i += 1
            e = value[i]
            if e == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", value[i + 1 : i + 3]):
                raw.append(int(value[i + 1 : i + 3], 16))
                i += 2
            else:
                raw += _C_ESCAPES.get(e, e).encode("utf-8", "surrogateescape")
        else:
            raw += c.encode("utf-8", "surrogateescape")
            inside = True
        i += 1
    if inside:
        words.append(raw.decode("utf-8", "surrogateescape"))
    return words


class _State(Enum):
    PRE_KEY = auto()
    KEY = auto()
    PRE_VALUE = auto()
    VALUE = auto()
    VALUE_ESCAPE = auto()
    SINGLE_QUOTED = auto()
    DOUBLE_QUOTED = auto()
    DOUBLE_QUOTED_ESCAPE = auto()
    COMMENT = auto()
    COMMENT_ESCAPE = auto()


# systemd's whitespace and line ends in environment files (not Python's wider ``isspace``)
_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_ENDS_WITH_A_VALUE = {
    _State.PRE_VALUE,
    _State.VALUE,
    _State.VALUE_ESCAPE,
    _State.SINGLE_QUOTED,
    _State.DOUBLE_QUOTED,
    _State.DOUBLE_QUOTED_ESCAPE,
}


class _EnvFile:
    """systemd's environment-file parser (its ``env-file.c``), a character at a time: one
    method per state, each taking the next character and returning the next state."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.name = ""
        self.text = ""
        self.trailing: int | None = None  # where the value's unescaped trailing whitespace starts

    def parse(self, text: str) -> dict[str, str]:
        state = _State.PRE_KEY
        for c in text:
            state = getattr(self, f"_{state.name.lower()}")(c)
        if state in _ENDS_WITH_A_VALUE:  # the last line, unended (even inside quotes) counts
            self._assign(self._value_text() if state is _State.VALUE else self.text)
        return self.found

    def _assign(self, value: str) -> _State:
        if _assignment(f"{self.name}=") is not None:
            self.found[self.name] = value
        return _State.PRE_KEY

    def _value_text(self) -> str:
        """The unquoted value without its trailing whitespace (an escaped one stays)."""
        return self.text if self.trailing is None else self.text[: self.trailing]

    def _pre_key(self, c: str) -> _State:
        if c in "#;":
            return _State.COMMENT
        if c in _WHITESPACE:
            return _State.PRE_KEY
        self.name = c
        return _State.KEY

    def _key(self, c: str) -> _State:
        if c in _NEWLINE:  # a line without '=' says nothing
            return _State.PRE_KEY
        if c == "=":
            self.name, self.text, self.trailing = self.name.rstrip(_WHITESPACE), "", None
            return _State.PRE_VALUE
        self.name += c
        return _State.KEY

    def _comment(self, c: str) -> _State:
        if c == "\\":
            return _State.COMMENT_ESCAPE
        return _State.PRE_KEY if c in _NEWLINE else _State.COMMENT

    def _comment_escape(self, c: str) -> _State:
        return _State.COMMENT

    def _pre_value(self, c: str) -> _State:
        opening = {"'": _State.SINGLE_QUOTED, '"': _State.DOUBLE_QUOTED, "\\": _State.VALUE_ESCAPE}
        if c in _NEWLINE:
            return self._assign(self.text)
        if c in opening:
            return opening[c]
        if c in _WHITESPACE:
            return _State.PRE_VALUE
        self.text += c
        return _State.VALUE

    def _value(self, c: str) -> _State:
        if c in _NEWLINE:
            return self._assign(self._value_text())
        if c == "\\":
            self.trailing = None
            return _State.VALUE_ESCAPE
        if c not in _WHITESPACE:
            self.trailing = None
        elif self.trailing is None:
            self.trailing = len(self.text)
        self.text += c
        return _State.VALUE

    def _value_escape(self, c: str) -> _State:
        self.text += "" if c in _NEWLINE else c  # a line end continues the line
        return _State.VALUE

    def _single_quoted(self, c: str) -> _State:
        if c == "'":
            return _State.PRE_VALUE
        self.text += c
        return _State.SINGLE_QUOTED

    def _double_quoted(self, c: str) -> _State:
        if c == '"':
            return _State.PRE_VALUE
        if c == "\\":
            return _State.DOUBLE_QUOTED_ESCAPE
        self.text += c
        return _State.DOUBLE_QUOTED

    def _double_quoted_escape(self, c: str) -> _State:
        self.text += c if c in _SHELL_ESCAPED else "" if c == "\n" else "\\" + c
        return _State.DOUBLE_QUOTED


def read_file(path: Path) -> dict[str, str]:
    """The variables of one ``EnvironmentFile=``, read as systemd reads it: ``NAME=value``
    lines, ``#`` and ``;`` comment lines, single quotes taken literally, in double quotes a
    backslash escapes only ``"`` ``\\`` ````` ``$`` and a line end, outside quotes any
    character; a backslash before a line end continues the line."""
    # bytes decoded as they are: reading as text would turn \r\n and \r into \n first
    return _EnvFile().parse(path.read_bytes().decode("utf-8", "surrogateescape"))


def unit_environment(show: str) -> tuple[dict[str, str], list[str]]:
    """(the variables, the files that could not be read) from ``systemctl show -p Environment
    -p EnvironmentFiles``'s output."""
    inline: dict[str, str] = {}
    files: dict[str, str] = {}
    unread: list[str] = []
    for line in show.split("\n"):  # a value may hold other line separators
        key, _, value = line.partition("=")
        if key == "Environment":
            inline.update(pair for word in show_words(value) if (pair := _assignment(word)))
        elif key == "EnvironmentFiles" and (match := _FILE.match(value.strip())):
            # systemd expands a pattern and reads the files it matches in order
            paths = sorted(glob.glob(match["path"])) or [match["path"]]
            for path in paths:
                try:
                    files.update(read_file(Path(path)))
                except OSError:
                    if match["ignore"] == "no":
                        unread.append(path)
    return inline | files, unread


# What a service's process has besides its unit's variables (systemd starts it with a clean
# environment: PATH, the locale, the user's HOME, USER, LOGNAME and SHELL) and the state folder
# the installer names. Nothing else of the installer's own environment is kept: a variable
# exported in the admin's shell would let the check pass where the service fails.
_SERVICE_HAS = {"PATH", "LANG", "LANGUAGE", "HOME", "USER", "LOGNAME", "SHELL", "STATE_DIRECTORY"}


def _exec_with(assignments: bytes, command: list[str]) -> None:
    """Become ``command`` with the environment the service has: ``assignments`` (NUL-ended)
    over what any service has."""
    env = {k: v for k, v in os.environ.items() if k in _SERVICE_HAS or k.startswith("LC_")}
    for item in assignments.split(b"\0"):
        pair = _assignment(item.decode("utf-8", "surrogateescape"))
        if pair:
            env[pair[0]] = pair[1]
    os.execvpe(command[0], command, env)


def main(argv: list[str]) -> int:
    """Print the unit's variables for the installer, or (``--exec -- COMMAND``) run a command
    with the variables read from stdin."""
    if argv[:2] == ["--exec", "--"] and len(argv) > 2:
        _exec_with(sys.stdin.buffer.read(), argv[2:])
    variables, unread = unit_environment(sys.stdin.read())
    for path in unread:
        print(f"the service's environment file {path} cannot be read: left out", file=sys.stderr)
    out = "".join(f"{name}={value}\0" for name, value in variables.items())
    sys.stdout.buffer.write(out.encode("utf-8", "surrogateescape"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
