"""Static checks of launch/fusion_perception.launch.py (launch_ros is not on PyPI, so it cannot run here).

The file is parsed, not imported: what it names must exist (executable, package, config file) and
every value in the YAML it loads must be a parameter the node declares, with the declared type.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from fusion_perception.ros.params import PARAMS, SPECS

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "fusion_perception.launch.py"
CONFIG = REPO / "config" / "fusion_perception.yaml"


def _module_constants(tree: ast.Module) -> dict[str, object]:
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Constant):
                consts[node.targets[0].id] = value.value
            elif isinstance(value, ast.Call) and ast.unparse(value.func) == "os.path.join":
                consts[node.targets[0].id] = str(Path(*(ast.literal_eval(a) for a in value.args)))
    return consts


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(name)]


def _kw(call: ast.Call, key: str, consts: dict[str, object]) -> object:
    (value,) = [k.value for k in call.keywords if k.arg == key]
    if isinstance(value, ast.Name):
        return consts[value.id]
    return ast.literal_eval(value) if isinstance(value, ast.Constant) else ast.unparse(value)


def _setup_console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    (call,) = _calls(tree, "setup")
    (entry,) = [k.value for k in call.keywords if k.arg == "entry_points"]
    scripts = ast.literal_eval(entry)["console_scripts"]
    return dict(s.replace(" ", "").split("=", 1) for s in scripts)


LAUNCH_TREE = ast.parse(LAUNCH.read_text())
CONSTS = _module_constants(LAUNCH_TREE)


def test_launch_starts_a_lifecycle_node_of_this_package_with_the_console_script() -> None:
    (node,) = _calls(LAUNCH_TREE, "LifecycleNode")
    package = ET.parse(REPO / "package.xml").getroot().findtext("name")
    assert _kw(node, "package", CONSTS) == package == "fusion_perception"
    executable = _kw(node, "executable", CONSTS)
    scripts = _setup_console_scripts()
    assert executable == "fusion_perception_node" and executable in scripts
    assert scripts[executable] == "fusion_perception.ros.node:main"
    assert _kw(node, "name", CONSTS) == "fusion_perception"


def test_config_file_exists_and_is_installed() -> None:
    assert (REPO / CONSTS["CONFIG"]) == CONFIG and CONFIG.is_file()
    setup = (REPO / "setup.py").read_text()
    assert '"config/*.yaml"' in setup and '"launch/*.launch.py"' in setup and '"config/*.xml"' in setup


def test_launch_sets_the_shipped_dds_profile_for_every_process() -> None:
    from fusion_perception.ros.transport import PROFILE_VARS, shipped_profile

    assert REPO / CONSTS["DDS_PROFILE"] == shipped_profile()  # the file the node itself would pick
    assert ast.literal_eval(_assign(LAUNCH_TREE, "PROFILE_VARS")) == PROFILE_VARS
    (setenv,) = _calls(LAUNCH_TREE, "SetEnvironmentVariable")
    assert ast.unparse(setenv) == "SetEnvironmentVariable(var, LaunchConfiguration('dds_profile'))"
    (default,) = [c for c in _calls(LAUNCH_TREE, "EnvironmentVariable")
                  if ast.unparse(c.func) == "EnvironmentVariable"]
    assert ast.unparse(default.args[0]) == "PROFILE_VARS[0]" and "DDS_PROFILE" in ast.unparse(default)


def _assign(tree: ast.Module, name: str) -> ast.expr:
    (value,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == name]
    return value


def test_namespace_remapping_and_params_file_arguments_are_declared_and_used() -> None:
    declared = {ast.literal_eval(c.args[0]) for c in _calls(LAUNCH_TREE, "DeclareLaunchArgument")}
    used = {ast.literal_eval(c.args[0]) for c in _calls(LAUNCH_TREE, "LaunchConfiguration")}
    assert {"namespace", "params_file", "ir_image", "visible_image"} <= declared
    assert declared == used, f"declared but unused: {declared - used}; used but undeclared: {used - declared}"
    (node,) = _calls(LAUNCH_TREE, "LifecycleNode")
    remaps = ast.literal_eval(ast.unparse(_kw_node(node, "remappings")).replace("LaunchConfiguration", ""))
    assert {src for src, _ in remaps} == {SPECS["ir_topic"].default, SPECS["visible_topic"].default}


def _kw_node(call: ast.Call, key: str) -> ast.expr:
    (value,) = [k.value for k in call.keywords if k.arg == key]
    return value


def test_every_yaml_parameter_is_declared_by_the_node_with_its_type_and_default() -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    (section,) = doc.values()
    params = section["ros__parameters"]
    assert set(params) <= set(SPECS), f"not declared by the node: {set(params) - set(SPECS)}"
    for name, value in params.items():
        default = SPECS[name].default
        assert type(value) is type(default), f"{name}: YAML {value!r} vs declared {default!r}"
        assert value == default, f"{name}: YAML and node defaults disagree ({value!r} vs {default!r})"
    missing = {p.name for p in PARAMS} - set(params)
    assert missing == {"homography"}  # ROS cannot type an empty list in YAML; documented as a comment
    assert "# homography:" in CONFIG.read_text()


def test_launch_file_sets_no_parameter_values_of_its_own() -> None:
    (node,) = _calls(LAUNCH_TREE, "LifecycleNode")
    assert ast.unparse(_kw_node(node, "parameters")) == "[LaunchConfiguration('params_file')]"
