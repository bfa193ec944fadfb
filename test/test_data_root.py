"""fusion_perception.data_root: the one place that says where the datasets are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusion_perception import data_root as dr

REPO = Path(__file__).resolve().parents[1]


def test_default_is_beside_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(dr.DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # the default does not depend on the working directory
    assert dr.data_root() == REPO.parent / "shared" / "datasets" == dr.DEFAULT_DATA_ROOT
    assert dr.dataset_path("msrs") == REPO.parent / "shared" / "datasets" / "msrs"
    monkeypatch.setenv(dr.DATA_ENV, "")  # empty counts as unset
    assert dr.data_root() == dr.DEFAULT_DATA_ROOT


def test_environment_variable_wins_and_is_read_at_each_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(dr.DATA_ENV, str(tmp_path / "data"))
    assert dr.data_root() == tmp_path / "data"
    assert dr.dataset_path("llvip_samples/train") == tmp_path / "data" / "llvip_samples" / "train"
    monkeypatch.setenv(dr.DATA_ENV, str(tmp_path / "other"))
    assert dr.dataset_path("tno") == tmp_path / "other" / "tno"


def test_resolve_data_path_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    (work / "local" / "msrs").mkdir(parents=True)
    monkeypatch.setenv(dr.DATA_ENV, str(data))
    monkeypatch.chdir(work)
    # absolute: kept, whether or not it exists
    assert dr.resolve_data_path(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert dr.resolve_data_path(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
    # relative and existing from the working directory: kept (existing command lines keep working)
    assert dr.resolve_data_path("local/msrs") == Path("local/msrs")
    assert dr.resolve_data_path("local/msrs").resolve() == work / "local" / "msrs"
    # any other relative path: a name under the data root
    assert dr.resolve_data_path("msrs") == data / "msrs"
    assert dr.resolve_data_path(Path("llvip_samples/train")) == data / "llvip_samples" / "train"


def test_training_config_resolves_its_folders_under_the_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    yaml = pytest.importorskip("yaml")
    from fusion_perception.training.config import DataConfig

    monkeypatch.setenv(dr.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert DataConfig().resolved_paths().msrs == tmp_path / "data" / "msrs"  # the default: "msrs"
    # The shipped configs' data sections (read alone: the rest of each file is another module's).
    sections = {
        name: yaml.safe_load((REPO / "config" / name).read_text())["data"]
        for name in ("train_bilevel.yaml", "train_tdfusion.yaml", "train_refusion.yaml")
    }
    for name, section in sections.items():
        assert section["msrs_root"] == "msrs", name
        assert DataConfig(**section).resolved_paths().msrs == tmp_path / "data" / "msrs", name
    data = DataConfig(**sections["train_refusion.yaml"], pseudo_labelled=["tno=data/teacher_labels/tno.json"])
    paths = data.resolved_paths()
    assert data.msrs_root == "msrs"  # the config keeps what was written
    assert paths.extra == [tmp_path / "data" / n for n in ("roadscene", "tno", "llvip_samples/train")]
    assert paths.pseudo == [(tmp_path / "data" / "tno", "data/teacher_labels/tno.json")]


def test_module_is_torch_and_numpy_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fusion_perception.data_root; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ})
