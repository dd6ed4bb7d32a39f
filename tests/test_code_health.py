"""The core stays readable: no import cycle in the daemon's package, no function too complex
to read in one pass (radon's C at most), and the daemon never imports TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "watchdog"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules this module imports, at the top or inside functions (a lazy import is
    still a dependency); ``if TYPE_CHECKING:`` blocks do not count."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_no_import_cycle_in_the_daemon_package() -> None:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_function_of_the_daemon_or_the_trainer_is_more_complex_than_radon_c() -> None:
    from radon.complexity import cc_rank, cc_visit

    too_complex = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "trainer").rglob("*.py")]):
        for block in cc_visit(path.read_text()):
            if cc_rank(block.complexity) > "C":
                too_complex.append(
                    f"{path.relative_to(ROOT)}:{block.lineno} {block.name} ({block.complexity})"
                )
    assert not too_complex, too_complex


# The daemon's memory budget on a Pi: TensorFlow is the trainer's; pydantic (about 10 MB) and
# requests were replaced by watchdog.schema and urllib3, numpy.ma (1.2 MB, which np.quantile
# imports) by watchdog.detection.quantile (benchmarks/memory.py).
HEAVY = ("tensorflow", "keras", "pydantic", "pydantic_core", "requests")


def test_the_daemon_runs_the_demo_without_tensorflow_or_heavy_libraries(tmp_path: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['watchdog', 'demo', '--out', sys.argv[1], '--interval', '0'];\n"
        "try:\n    runpy.run_module('watchdog', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m == 'numpy.ma')\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert "HEAVY []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert "paused" in out.stderr
