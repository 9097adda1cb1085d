"""Who may import whom: the sandbox stands alone, and Gantry reaches GCP only via its adapter."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GANTRY = ["portal", "environments", "deployments", "github", "notifications", "audit", "gcp"]
APPS = [app for app in GANTRY if app != "gcp"]
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


def test_only_the_gcp_package_imports_the_client_libraries():
    for path in modules(*APPS):
        google = {n for n in imported(path) if n.startswith(("google.cloud", "google.api_core"))}
        assert not google, path


def test_gcp_is_the_bottom_layer_and_imports_no_gantry_app():
    for path in modules("gcp"):
        assert not {n for n in imported(path) if n.split(".")[0] in APPS}, path


def relative_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_engine_sits_above_its_steps_never_below():
    """steps.py is what strategies, promotion and verification build on; the engine imports
    them, so none of them may import the engine (no cycle)."""
    below = [ROOT / "deployments/steps.py", ROOT / "deployments/promotion.py"]
    below += [ROOT / "deployments/verification.py", *(ROOT / "deployments/strategies").glob("*.py")]
    for path in below:
        names = imported(path) | relative_imports(path)
        assert not {n for n in names if n.rsplit(".", 1)[-1] == "engine"}, path


def test_github_is_a_boundary_the_lower_apps_never_import():
    """github/ builds on deployments (releases, state_changed); never the other way round."""
    for path in modules("deployments", "environments", "audit"):
        assert not {n for n in imported(path) if n.split(".")[0] == "github"}, path
