"""``fusion-perception evaluate`` on a small MSRS-layout folder, and its errors on malformed folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fusion_perception.assets import sample_pairs  # noqa: E402
from fusion_perception.metrics.fusion import FUSION_METRICS  # noqa: E402
from fusion_perception.models.checkpoint import random_deployed, save_deployed  # noqa: E402
from fusion_perception.training.evaluate import main, pyramid_fusion  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three bundled pairs laid out as MSRS (ir/, vi/, labels_det_fusion/, splits/)."""
    root = tmp_path_factory.mktemp("msrs")
    for sub in ("ir", "vi", "labels_det_fusion", "splits"):
        (root / sub).mkdir()
    names = []
    for pair in sample_pairs()[:3]:
        shutil.copy(pair.ir, root / "ir" / f"{pair.name}.png")
        shutil.copy(pair.visible, root / "vi" / f"{pair.name}.png")
        shutil.copy(pair.labels, root / "labels_det_fusion" / f"{pair.name}.txt")
        names.append(pair.name)
    (root / "splits" / "val.txt").write_text("\n".join(names[:2]) + "\n")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusion_perception.models.checkpoint import default_model_config

    model = random_deployed(seed=0)
    return save_deployed(
        model, tmp_path_factory.mktemp("ckpt") / "model.pt", default_model_config(model.info)
    )


def test_evaluate_writes_every_section(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert (
        main(
            [
                str(dataset),
                "--json",
                str(out),
                "--checkpoint",
                str(checkpoint),
                "--split",
                "val",
                "--baseline",
                f"ir={checkpoint}",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["num_pairs"] == 2
    assert set(report["fusion"]) == {"model", "average", "max", "pyramid"}
    for row in report["fusion"].values():
        assert set(row) == set(FUSION_METRICS)
    assert set(report["detection"]) == {"fused", "ir", "visible", "ir_trained"}
    for det in report["detection"].values():
        assert 0.0 <= det["mAP50"] <= 1.0 and set(det["per_class"]) == {"person", "bicycle", "car"}
    # The max baseline's EN/SD come from real data: the suite ran on the real images.
    assert report["fusion"]["max"]["EN"] > 5.0
    assert report["segmentation"] is None  # no segmentation labels in this folder
    # MSRS names: each detector also scored on the day (..D) and the night (..N) pairs apart.
    val = (dataset / "splits" / "val.txt").read_text().split()
    by_time = report["detection_by_time_of_day"]
    for time_of_day, suffix in (("day", "D"), ("night", "N")):
        assert set(by_time[time_of_day]) == set(report["detection"])
        counted = by_time[time_of_day]["fused"]["num_images"]
        assert counted == sum(name.endswith(suffix) for name in val) > 0


def test_pyramid_fusion_of_identical_sources_is_the_source() -> None:
    import numpy as np

    img = np.random.default_rng(0).random((64, 96)).astype(np.float32)
    assert np.allclose(pyramid_fusion(img, img), img, atol=1e-5)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda r: shutil.rmtree(r / "labels_det_fusion"), "labels_det_fusion"),
        (
            lambda r: (r / "labels_det_fusion" / f"{sample_pairs()[0].name}.txt").write_text("0 0.5 0.5\n"),
            f"{sample_pairs()[0].name}.txt",
        ),
        (lambda r: (r / "vi" / f"{sample_pairs()[1].name}.png").unlink(), sample_pairs()[1].name),
        (
            lambda r: (r / "ir" / f"{sample_pairs()[2].name}.png").write_bytes(b"not a png"),
            f"{sample_pairs()[2].name}.png",
        ),
    ],
    ids=["no-label-folder", "malformed-label", "missing-visible", "corrupt-image"],
)
def test_malformed_dataset_names_the_file(
    dataset: Path, checkpoint: Path, tmp_path: Path, capsys, breakage, message: str
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    breakage(broken)
    out = tmp_path / "report.json"
    assert main([str(broken), "--json", str(out), "--checkpoint", str(checkpoint)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
