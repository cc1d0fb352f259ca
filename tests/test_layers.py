"""The web edge's rule of layout: a web module (one that serves a route) imports the
core, never another web module, and no core module imports a web module; app.py
alone puts them together. Read from the modules' source, so an import inside a
function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import feed
from feed.app import create_app
from feed.settings import Settings

PACKAGE = Path(feed.__file__).parent
# Builds the app from every web module's routes.
ASSEMBLER = "feed.app"


def module_names() -> dict[str, Path]:
    """Every module of the feed package, by its dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def web_modules() -> set[str]:
    """The modules whose code serves a route of the app, as create_app builds it."""
    app = create_app(Settings(database_url="sqlite://"))  # not started: routes only
    served = set()
    for route in app.starlette.routes:
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        module = getattr(endpoint, "__module__", None) or type(endpoint).__module__
        if module.split(".")[0] == "feed":
            served.add(module)
    return served


def imports(name: str, path: Path) -> set[str]:
    """The feed modules ``name`` imports, wherever in it the import statement is."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from feed import api" imports the module feed.api.
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found & set(module_names())


def test_web_modules_import_no_other_web_module_and_the_core_imports_none() -> None:
    web = web_modules()
    # What serves routes today: if this finds less, the rule below proves nothing.
    assert {
        "feed.admin",
        "feed.api",
        "feed.channel_api",
        "feed.health",
        "feed.kiosk",
        "feed.openapi",
        "feed.pages",
        "feed.search_pages",
        "feed.signin",
        "feed.stream",
    } <= web, web
    crossings = [
        f"{name} imports {imported}"
        for name, path in module_names().items()
        if name != ASSEMBLER
        for imported in sorted(imports(name, path) & web - {name})
    ]
    assert crossings == [], "\n".join(crossings)
