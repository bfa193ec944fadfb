"""The layers of docs/DESIGN.md hold in the source: no module imports from a layer above its own.

Read from the source (every ``import``, also those inside functions), so a lazy import that climbs
a layer is caught even where no test path executes it. A subprocess test in test_backends.py checks
the same thing at run time for the node path (torch never lands in ``sys.modules``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fusion_perception"
TORCH_LAYER = ("models", "training", "export", "teacher")
ABOVE_RUNTIME = ("ros", "bag", "cli", "demo", "backend_factory", *TORCH_LAYER)

# module path (relative to the package) -> prefixes it must not import
RULES: dict[str, tuple[str, ...]] = {
    "runtime/": ("torch", "rclpy", "rosbags", *(f"fusion_perception.{m}" for m in ABOVE_RUNTIME)),
    "preprocessing.py": ("torch", "rclpy", "fusion_perception.runtime",
                         *(f"fusion_perception.{m}" for m in ABOVE_RUNTIME)),
    "image_encoding.py": ("torch", "rclpy", *(f"fusion_perception.{m}" for m in ABOVE_RUNTIME)),
    "pairing.py": ("torch", "rclpy", *(f"fusion_perception.{m}" for m in ABOVE_RUNTIME)),
    "vision_messages.py": ("torch", "rclpy", "rosbags", *(f"fusion_perception.{m}" for m in ABOVE_RUNTIME)),
    "ros/": ("torch", "rosbags", *(f"fusion_perception.{m}" for m in (*TORCH_LAYER, "bag", "cli", "demo"))),
    # bag play is live replay (rclpy); bag/cli.py is part of the CLI layer and may use its helpers
    "bag/": ("torch", *(f"fusion_perception.{m}" for m in ("models", "training", "export"))),
}


def _imports(path: Path, package: Path) -> list[str]:
    """Absolute names of everything ``path`` (inside ``package``) imports, relative imports resolved."""
    module = ".".join((package.name, *path.relative_to(package).with_suffix("").parts))
    parent = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parent.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names += [target] + [f"{target}.{alias.name}" for alias in node.names]
    return names


def _violations(rule: str, banned: tuple[str, ...], package: Path = PACKAGE) -> list[str]:
    files = sorted((package / rule).rglob("*.py")) if rule.endswith("/") else [package / rule]
    out = []
    for path in files:
        for name in _imports(path, package):
            if any(name == b or name.startswith(b + ".") for b in banned):
                out.append(f"{path.relative_to(package.parent)} imports {name}")
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_no_module_imports_a_layer_above_its_own(rule: str) -> None:
    assert _violations(rule, RULES[rule]) == []


def test_the_check_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The scanner resolves ``from ..models import x`` inside a function (what runtime once did)."""
    runtime = tmp_path / "fusion_perception" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "lazy.py").write_text(
        "def f():\n    from ..models.checkpoint import load_deployed\n    import torch\n")
    (runtime / "fine.py").write_text("from .backend import Backend\nfrom ..errors import ModelFormatError\n")
    found = _violations("runtime/", RULES["runtime/"], runtime.parent)
    lazy = "fusion_perception/runtime/lazy.py imports"
    assert found == [f"{lazy} fusion_perception.models.checkpoint",
                     f"{lazy} fusion_perception.models.checkpoint.load_deployed", f"{lazy} torch"]
