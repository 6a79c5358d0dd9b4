"""The code's shape, checked: the engine knows nothing of the web app, and no
module or function outgrows what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "pensieve" / "engine"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved to pensieve.*."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
    return names


def test_the_engine_imports_nothing_of_flask_or_the_web_app() -> None:
    web = ("flask", "werkzeug", "pensieve.api", "pensieve.config", "pensieve.metrics")
    found = {
        f"{path.name}: {name}"
        for path in ENGINE.glob("*.py")
        for name in imported_modules(path)
        if name.startswith(web) or name == "pensieve"
    }
    assert not found


def source_files() -> list[Path]:
    return [
        path
        for folder in ("pensieve", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
    ] + [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py"]


def test_modules_and_functions_stay_small() -> None:
    too_big = []
    for path in source_files():
        text = path.read_text()
        name = path.relative_to(ROOT)
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            too_big.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if size > MAX_FUNCTION_LINES:
                    too_big.append(f"{name}:{node.lineno} {node.name}: {size} lines")
    assert not too_big
