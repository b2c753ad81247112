"""The errors of jaxcnn's layers, nets and model-file readers. Each carries the parts a caller needs to say what
went wrong in its own words (the layer, the file, the message apart); str() is the usual one-line form, and a
command line maps each type to its line (jaxcnn.cli.message).

    >>> import jax
    >>> from jaxcnn import Conv
    >>> from jaxcnn.errors import CaffeFormatError
    >>> Conv("conv2", 48, 5, groups=3).init(jax.random.key(0), (12, 12, 20))   # raise LayerError(message, layer)
    Traceback (most recent call last):
    ...
    jaxcnn.errors.LayerError: conv2 (Conv): groups=3 does not divide 20 input channels
    >>> error = CaffeFormatError("deploy.prototxt", "filler type 'bilinear' is not supported", layer="conv1",
    ...                          kind="Convolution")
    >>> print(error)
    deploy.prototxt: layer 'conv1' (Convolution): filler type 'bilinear' is not supported
    >>> error.layer, error.message
    ('conv1', "filler type 'bilinear' is not supported")
"""
from pathlib import Path


def existing_file(path, kind: str) -> Path:
    """`path` as a Path when it names a file; else FileNotFoundError, "PATH: no such KIND file", or "PATH: a
    directory, not a KIND file" when a directory is there."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: a directory, not a {kind} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {kind} file")
    return path


def label(layer) -> str:
    """How an error names a layer: its name and type, 'conv2 (Conv)'."""
    return f"{layer.name} ({type(layer).__name__})"


class LayerError(ValueError):
    """A layer's config does not fit its input, or its input does not fit its parameters; or a net's wiring of
    its layers is wrong.

    Attributes: message (what is wrong), layer (the Layer concerned, or None where the message says what it
    concerns) and net (the name of the net, where the error is about its wiring, else None).
    str(): "conv2 (Conv): groups=3 does not divide 20 input channels"; with a net, "lenet: conv2 (Conv): ...".
    """

    def __init__(self, message: str, layer=None, *, net: str | None = None):
        self.message, self.layer, self.net = message, layer, net
        parts = [net] if net else []
        if layer is not None:
            parts.append(label(layer))
        super().__init__(": ".join([*parts, message]))


class ModelFileError(ValueError):
    """A model file jaxcnn cannot read: malformed, or using a layer type or field jaxcnn does not implement.

    Attributes: file (its path, or what stands for it: 'prototxt' for text given directly; None when not yet
    known), layer (the name of the layer concerned, or None), kind (that layer's type as the file names it, or
    None) and message (what is wrong).
    str(): "deploy.prototxt: layer 'conv1' (Convolution): filler type 'bilinear' is not supported", of the parts
    that are known.
    """

    def __init__(self, file, message: str, *, layer: str | None = None, kind: str | None = None):
        self.file, self.message, self.layer, self.kind = file, message, layer, kind
        where = None if layer is None else f"layer {layer!r}" + (f" ({kind})" if kind else "")
        super().__init__(": ".join(str(p) for p in (file, where, message) if p is not None))

    def at(self, file, *, layer: str | None = None, kind: str | None = None):
        """The same error placed in `file` (and layer and kind), where it has none of its own."""
        return type(self)(self.file if self.file is not None else file, self.message,
                          layer=self.layer if self.layer is not None else layer,
                          kind=self.kind if self.layer is not None else kind)


class CaffeFormatError(ModelFileError):
    """A Caffe file (prototxt, caffemodel, solver) jaxcnn cannot read."""


class ConvNetFormatError(ModelFileError):
    """A cuda-convnet layer file jaxcnn cannot read (its layer: the file's section)."""
