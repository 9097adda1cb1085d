"""Who may import whom: the sandbox stands alone, and Gantry reaches GCP only via its adapter."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GANTRY = ["portal", "environments", "deployments", "github", "notifications", "audit"]
# demo/ is the demo's wiring


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules(*folders: str):
    for folder in folders:
        yield from (p for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts)


def test_the_sandbox_imports_no_gantry_code():
    for path in modules("sandbox"):
        roots = {name.split(".")[0] for name in imported(path)}
        assert not roots & {*GANTRY, "django"}, path


def test_gantry_code_does_not_import_the_sandbox():
    for path in modules(*GANTRY):
        assert not {n for n in imported(path) if n.split(".")[0] == "sandbox"}, path


def test_only_the_adapter_imports_google_cloud():
    for path in modules(*GANTRY):
        if path != ROOT / "deployments/gcp.py":
            assert not any(n.startswith("google.cloud") for n in imported(path)), path


def test_github_is_a_boundary_the_lower_apps_never_import():
    """github/ builds on deployments (releases, state_changed); never the other way round."""
    for path in modules("deployments", "environments", "audit"):
        assert not {n for n in imported(path) if n.split(".")[0] == "github"}, path
