"""Thin command-line experiments over the jaxcnn library: python -m experiments.<name>."""
