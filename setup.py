"""ament_python packaging: `colcon build` on a ROS 2 machine, `pip install -e .` in the project venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusion_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={
        PACKAGE: ["assets/*.onnx", "assets/*.pt", "assets/*.json", "assets/*.md", "assets/samples/*/*"]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="fusion_perception maintainers",
    maintainer_email="maintainers@fusion-perception.invalid",
    description="IR/visible fusion, segmentation and detection as ROS 2 nodes, bag evaluation and training.",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fusion_perception_node = fusion_perception.ros.node:main",
            "fusion-perception = fusion_perception.cli:main",
        ],
    },
)
