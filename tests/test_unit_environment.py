"""The service's environment as the installer reads it from `systemctl show` (no systemd runs
here: the text is what systemctl prints for such a unit, the environment files are real files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from watchdog.unit_environment import read_file, show_words, unit_environment

MODULE = [sys.executable, "-m", "watchdog.unit_environment"]


def test_values_as_systemctl_quotes_them() -> None:
    # a value with a space or a special character is double-quoted, its " \ ` $ escaped and
    # its control characters written as C escapes
    printed = r'PYTHONUNBUFFERED=1 "GREETING=hello world" "PASS=ab\$c\"d\\e\`f" "TAB=a\tb\x01"'
    assert show_words(printed) == [
        "PYTHONUNBUFFERED=1",
        "GREETING=hello world",
        'PASS=ab$c"d\\e`f',
        "TAB=a\tb\x01",
    ]
    assert show_words("") == []


def test_an_environment_file_as_systemd_reads_it(tmp_path: Path) -> None:
    env = tmp_path / "watchdog.env"
    env.write_text(
        "# a token kept out of config.yaml\n"
        "; another comment\n"
        'DOUBLE="abc \\"q\\" \\$x \\n"\n'
        "SINGLE='it\\'s\n"
        "BARE = pa\\$ss  \n"
        "LONG=one \\\ntwo\n"
        "QUOTED_THEN='a'b\n"
        "EMPTY=\n"
        "not a variable\n"
        "also not=1\n"
        "LAST=no newline at the end"
    )
    assert read_file(env) == {
        "DOUBLE": 'abc "q" $x \\n',  # only " \ ` $ lose their backslash in double quotes
        "SINGLE": "it\\s",  # nothing escapes in single quotes
        "BARE": "pa$ss",  # outside quotes a backslash takes any character literally
        "LONG": "one two",
        "QUOTED_THEN": "ab",
        "EMPTY": "",
        "LAST": "no newline at the end",
    }


def test_files_override_the_unit_in_order_and_missing_ones_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("SHARED=from-a\nONLY_A=1\n")
    (tmp_path / "b.env").write_text("SHARED='from b'\n")
    (tmp_path / "extra-1.env").write_text("EXTRA=1\n")
    show = (
        'Environment=PYTHONUNBUFFERED=1 "SHARED=inline value"\n'
        f"EnvironmentFiles={tmp_path / 'a.env'} (ignore_errors=no)\n"
        f"EnvironmentFiles={tmp_path / 'b.env'} (ignore_errors=no)\n"
        f"EnvironmentFiles={tmp_path / 'extra-*.env'} (ignore_errors=no)\n"
        f"EnvironmentFiles={tmp_path / 'optional.env'} (ignore_errors=yes)\n"
        f"EnvironmentFiles={tmp_path / 'required.env'} (ignore_errors=no)\n"
    )
    variables, unread = unit_environment(show)
    assert variables == {
        "PYTHONUNBUFFERED": "1",
        "SHARED": "from b",  # files override Environment=, later files earlier ones
        "ONLY_A": "1",
        "EXTRA": "1",  # a pattern reads the files it matches
    }
    assert unread == [str(tmp_path / "required.env")]
    proc = subprocess.run(MODULE, input=show, capture_output=True, text=True, check=True)
    assert proc.stderr.strip() == (
        f"the service's environment file {tmp_path / 'required.env'} cannot be read: left out"
    )


def test_the_check_runs_with_the_variables_and_they_never_reach_a_command_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "token.env").write_text('OCTOPRINT_KEY="s3cr$t \\$"\n')
    show = f"Environment=\nEnvironmentFiles={tmp_path / 'token.env'} (ignore_errors=no)\n"
    printed = subprocess.run(MODULE, input=show.encode(), capture_output=True, check=True).stdout
    assert printed == b"OCTOPRINT_KEY=s3cr$t $\0"
    command = [sys.executable, "-c", "import os, sys; print(os.environ['OCTOPRINT_KEY'], sys.argv)"]
    ran = subprocess.run(
        [*MODULE, "--exec", "--", *command], input=printed, capture_output=True, check=True
    )
    assert ran.stdout.decode().split(" ", 2)[:2] == ["s3cr$t", "$"]
    assert b"s3cr" not in ran.stdout.split(b" ", 2)[2]  # not in the check's arguments


def test_the_edges_of_an_environment_file_as_systemd_reads_them(tmp_path: Path) -> None:
    """Where systemd's parser differs from a shell's or from Python's idea of whitespace."""
    env = tmp_path / "watchdog.env"
    env.write_bytes(
        "ESCAPED_SPACE=pa\\ \n"  # an escaped trailing space stays, unescaped ones go
        "NBSP=a\u00a0\n"  # only space, tab and the line ends are whitespace to systemd
        "CR=one\rNEXT=two\n"  # a carriage return ends a line too
        "CONTINUED=x\\\r\nAFTER=y\r\n".encode()  # a backslash before CRLF ends the value there
    )
    assert read_file(env) == {
        "ESCAPED_SPACE": "pa ",
        "NBSP": "a\u00a0",
        "CR": "one",
        "NEXT": "two",
        "CONTINUED": "x",
        "AFTER": "y",
    }
    for text, value in (
        ('UNCLOSED="abc', "abc"),  # a quote left open at the end of the file still counts
        ("UNCLOSED='abc", "abc"),
        ("ENDS_IN_A_BACKSLASH=foo\\", "foo"),
    ):
        env.write_text(text)
        assert read_file(env) == {text.split("=")[0]: value}, text


def test_another_line_separator_inside_a_value_does_not_cut_the_units_variables() -> None:
    show = 'Environment="A=x\u2028y" B=2\nEnvironmentFiles=\n'
    assert unit_environment(show)[0] == {"A": "x\u2028y", "B": "2"}


def test_the_check_does_not_see_what_the_installers_own_shell_exported() -> None:
    """A variable the admin exported in their shell is not the service's: the check must not
    pass on it where the service would fail."""
    command = [sys.executable, "-c", "import os; print(sorted(os.environ))"]
    ran = subprocess.run(
        [*MODULE, "--exec", "--", *command],
        input=b"FROM_THE_UNIT=1\0",
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OCTOPRINT_KEY": "exported-by-hand"},
    )
    names = ran.stdout.decode()
    assert "FROM_THE_UNIT" in names and "LANG" in names and "PATH" in names
    assert "OCTOPRINT_KEY" not in names
