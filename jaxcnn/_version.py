"""jaxcnn's version, in one place: the package's __version__, the run manifests and pyproject.toml read it."""
__version__ = "0.1.0"
