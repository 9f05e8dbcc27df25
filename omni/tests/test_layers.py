"""Dependencies point one way: campaigns -> channels -> compliance, templates -> contacts -> omni's base.

omni's base (audit writer, API keys, shared choices, lib) imports no app; omni's web layer
(settings, urls, the admin site, cross-app pages, the demo data) may import every app and is
imported by none. Tests and migrations are left out: they may reach anywhere.
"""
import ast
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# Higher may import lower; equal ranks are siblings that must not import each other.
RANKS = {"omni": 0, "contacts": 1, "compliance": 2, "templates": 2, "channels": 3, "campaigns": 4, "omni-web": 5}
OMNI_WEB_MODULES = (
    "omni.settings", "omni.urls", "omni.wsgi", "omni.asgi", "omni.admin", "omni.views", "omni.web",
    "omni.management.commands.seed_demo", "omni.management.commands.bench", "omni.bench",
)


def layer_of(module: str) -> str | None:
    if module == "omni" or module.startswith("omni."):
        return "omni-web" if module.startswith(OMNI_WEB_MODULES) else "omni"
    top = module.split(".")[0]
    return top if top in RANKS else None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
    return found


def source_files(root: Path = ROOT):
    for app in ("omni", "contacts", "compliance", "templates", "channels", "campaigns"):
        for path in sorted((root / app).rglob("*.py")):
            parts = path.relative_to(root).parts
            if "tests" in parts or "migrations" in parts or path.name == "conftest.py":
                continue
            yield path


def upward_imports(root: Path = ROOT) -> list[str]:
    problems = []
    for path in source_files(root):
        module = module_name(path, root)
        source = layer_of(module)
        for line, imported in imports_of(path, module):
            target = layer_of(imported)
            if target is None or target == source:
                continue
            if RANKS[target] >= RANKS[source]:
                problems.append(f"{path.relative_to(root)}:{line} ({source}) imports {imported} ({target})")
    return problems


def test_no_import_points_upward():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    # The rule itself can fail: in a copy of the tree's shape, contacts importing compliance is
    # reported (the repository itself is never written to).
    (tmp_path / "contacts").mkdir()
    (tmp_path / "contacts" / "_layer_probe.py").write_text("from compliance.models import Consent\n")
    (tmp_path / "contacts" / "fine.py").write_text("from omni import audit\n")

    assert upward_imports(tmp_path) == [
        "contacts/_layer_probe.py:1 (contacts) imports compliance.models.Consent (compliance)"]
