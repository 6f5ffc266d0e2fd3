"""bench: experiment registry, configs, runs, metrics, feature extractors and the run store."""
__version__ = "0.1.0"
