from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [line.strip() for line in (here / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

# snnclf export: NIR graphs (nir with v_reset, and what SpikingJelly's importer wants; nirtorch for
# snnTorch's and SpikingJelly's importers, which run them) and ONNX (onnxruntime checks it)
EXPORT = ["nir>=1.0.7", "nirtorch>=2.0", "spikingjelly[nir]>=2.0", "onnx>=1.14", "onnxruntime>=1.16"]
# snnclf tune: the search (Optuna)
TUNE = ["optuna>=3.4"]
# CIFAR10-DVS's .aedat4 files: the decoder tonic reads them with
EVENTS = ["aedat>=2"]
# the tests write AEDAT 4 files LZ4-compressed, as the cameras record them
TEST_FORMATS = ["lz4>=4"]

setup(
    name="snnclf",
    version="0.1.0",
    description="Train, evaluate and explain spiking neural network image classifiers",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["snnclf", "snnclf.*"]),
    python_requires=">=3.9",
    install_requires=requirements,
    extras_require={"test": ["pytest>=7", "hypothesis>=6", "tensorboard>=2.10", *EXPORT, *TUNE, *EVENTS, *TEST_FORMATS],
                    "tensorboard": ["tensorboard>=2.10"],
                    "export": EXPORT,
                    "tune": TUNE,
                    "events": EVENTS,
                    # the manual as a site: mkdocs build --strict (mkdocs.yml)
                    "docs": ["mkdocs>=1.5,<2", "mkdocs-material>=9.5"]},
    entry_points={"console_scripts": ["snnclf=snnclf.__main__:main"]},
)
