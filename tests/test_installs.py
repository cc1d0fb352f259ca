"""Installs are reproducible: every ``pip install`` (Makefile, Dockerfile) takes its
versions from constraints.txt, which pins each package once; pyproject.toml declares
what feed, its tests and its benchmark import; the server gets only the uvicorn extras
it uses."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = ROOT / "constraints.txt"
# uvicorn[standard] would bring these; feed needs none of them to serve.
UNUSED_EXTRAS = {"watchfiles", "websockets", "pyyaml", "python-dotenv"}


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            assert canonicalize_name(name) not in found, f"{name} is pinned twice"
            found[canonicalize_name(name)] = version
    return found


def declared(*extras: str) -> list[Requirement]:
    """feed's requirements with ``extras``, its own extras named inside them expanded."""
    wanted = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    optional = PYPROJECT["project"]["optional-dependencies"]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in map(Requirement, optional[extra]):
            if requirement.name == "feed":
                pending += sorted(requirement.extras - seen)
            else:
                wanted.append(requirement)
    return wanted


def recipes(makefile: str) -> dict[str, list[str]]:
    """Each Makefile rule's target line, with its recipe's lines."""
    found: dict[str, list[str]] = {}
    target = ""
    for line in makefile.splitlines():
        if line.startswith("\t") and target:
            found[target].append(line.strip())
        elif re.match(r"^[^\s#=]+:(?!=)", line):
            target = line.split(":")[0]
            found[target] = []
        else:
            target = ""
    return found


def test_every_pip_install_takes_the_pinned_versions() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"(?m)^CONSTRAINTS := constraints.txt$", makefile)
    [pinned] = re.findall(r"(?m)^PIP_INSTALL := (.*)$", makefile)
    assert "--constraint $(CONSTRAINTS) --build-constraint $(CONSTRAINTS)" in pinned
    installs = [
        line
        for target, lines in recipes(makefile).items()
        if target != "constraints"  # which resolves new pins, on purpose without the old
        for line in lines
        if "pip install" in line or "PIP_INSTALL" in line
    ]
    assert len(installs) >= 4  # pip, feed, its tests, its benchmark
    for line in installs:
        assert "$(PIP_INSTALL)" in line or "--constraint $(CONSTRAINTS)" in line, line
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    commands = [c for c in re.split(r"&&|\n", dockerfile) if "pip install" in c]
    assert len(commands) == 2  # pip itself, then feed
    for command in commands:
        assert "--constraint constraints.txt" in command, command
    assert "--build-constraint constraints.txt" in commands[-1]


def test_constraints_pin_every_declared_package_within_its_range() -> None:
    pinned = pins()
    for requirement in declared("test", "bench"):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(pinned[name], prereleases=True), requirement
    # The build backend and pip are pinned as well.
    for tool in PYPROJECT["build-system"]["requires"]:
        assert canonicalize_name(Requirement(tool).name) in pinned
    assert "pip" in pinned


def test_what_is_installed_here_is_what_is_pinned() -> None:
    for name, version in pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # the benchmark's, or the build backend's
        assert installed == version, f"{name} {installed} is installed, {version} is pinned"


def test_sqlmodel_stays_below_0_1() -> None:
    [sqlmodel] = [r for r in declared() if r.name == "sqlmodel"]
    assert not sqlmodel.specifier.contains("0.1.0")
    assert sqlmodel.specifier.contains(pins()["sqlmodel"])


def test_the_server_gets_uvloop_and_httptools_but_no_other_uvicorn_extra() -> None:
    base = declared()
    [uvicorn] = [r for r in base if r.name == "uvicorn"]
    assert uvicorn.extras == set()
    assert {"uvloop", "httptools"} <= {canonicalize_name(r.name) for r in base}
    assert UNUSED_EXTRAS.isdisjoint(closure(base))
    # PyYAML and python-dotenv stay pinned: test tools need them.
    assert not {"watchfiles", "websockets"} & set(pins())


def closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution ``requirements`` bring, read from what is installed here."""
    found: set[str] = set()
    pending = [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while pending:
        name = canonicalize_name(pending.pop().name)
        if name in found:
            continue
        found.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement)
    return found


def imported(folder: str) -> set[str]:
    """Top-level modules imported by the Python files in ``folder``, but the standard
    library's and the project's own."""
    names: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"feed", "tests", "bench", "__future__"}


def test_every_package_imported_is_declared_where_it_is_used() -> None:
    owners = importlib.metadata.packages_distributions()
    # feed imports its PostgreSQL and Redis clients only when a URL names them.
    uses = {"feed": ("postgresql", "redis"), "tests": ("test",), "bench": ("bench",)}
    for folder, extras in uses.items():
        names = {canonicalize_name(r.name) for r in declared(*extras)}
        for module in imported(folder):
            # The benchmark's packages are not installed for the tests: a module that is
            # not installed is taken to be named as its distribution.
            distributions = owners.get(module, [module])
            assert {canonicalize_name(d) for d in distributions} & names, (
                f"{folder}/ imports {module}, which pyproject.toml does not declare "
                f"with the extras {extras}"
            )
