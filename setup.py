"""Packaging for both worlds: ``pip install -e .`` (the README's venv) and ``colcon build``
(ament_python), which installs package.xml, the ament index marker, launch and config files."""

from glob import glob

from setuptools import find_packages, setup

setup(
    name="carpose",
    version="0.1.0",
    description="ROS 2 car azimuth estimation: detect, crop, estimate which way each car faces",
    python_requires=">=3.10",
    packages=find_packages(include=["carpose", "carpose.*", "training", "training.*"]),
    package_data={"training.cars": ["known_models.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/carpose"]),
        ("share/carpose", ["package.xml"]),
        ("share/carpose/launch", glob("launch/*.launch.py")),
        ("share/carpose/config", glob("config/*.yaml") + glob("config/*.xml")),
        # The shipped models, found at run time by carpose.shipped (package share first).
        ("share/carpose/models", [*glob("models/*.onnx"), "models/README.md"]),
    ],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "carpose-render = training.render.cli:main",
            "carpose-train = training.pose.train:main",
            "carpose-eval = training.pose.evaluate:main",
            "carpose-export = training.pose.export:main",
            "carpose-adapt-bn = training.pose.adapt_bn:main",
            "carpose-train-det = training.detector.train:main",
            "carpose-infer = carpose.infer:main",
            "carpose-det-eval = carpose.eval.det_eval:main",
            "carpose-benchmark = carpose.eval.benchmark:main",
            "carpose-det-select = training.detector.select:main",
            "carpose-det-soup = training.detector.soup:main",
            "carpose-det-int8 = training.detector.quantize:main",
            "carpose-det-widen = training.detector.widen:main",
            "carpose-pseudo-label = training.detector.pseudo_label:main",
            "carpose-verify-labels = training.detector.verify_labels:main",
            "carpose-pseudo-pose = training.pose.pseudo_pose:main",
            "carpose-real-crops = training.pose.real_photos:main",
            "carpose-build-engine = training.build_engine:main",
            "carpose_node = carpose.ros.node:run",
            "carpose-make-bag = training.render.drive_bag:main",
            "carpose-bag-eval = carpose.eval.bag_eval:main",
        ],
    },
)
