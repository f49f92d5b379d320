"""ssd: Semi-Supervised Deep SVDD anomaly detection for folders of images.

The public Python API (docs/python-api.md); everything else is internal. Names are imported on
first use, so `import ssd_cli` and `ssd --help` stay fast (torch loads only when it is needed).

Layers, each importing only itself and those before it (docs/architecture.md; tests check it):
errors <- core (with metrics, thresholds, device) <- data <- io <- engine | experiments <- api <- cli.
"""

__version__ = "0.6.0"

__all__ = ["Detector", "AnomalyMaps", "Evaluation", "PixelMetrics", "Scores", "ScoreResult", "SsdError", "FIT_SETTINGS", "__version__"]

_WHERE = {
    "AnomalyMaps": "io.results",
    "Detector": "api",
    "Evaluation": "io.results",
    "FIT_SETTINGS": "api",
    "PixelMetrics": "metrics",
    "Scores": "io.results",
    "ScoreResult": "io.results",
    "SsdError": "errors",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'ssd_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
