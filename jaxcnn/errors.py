"""The errors of jaxcnn's layers and nets. Each carries the parts a caller needs to say what went wrong in its own
words (the layer, the message apart); str() is the usual one-line form, and a command line maps each type to its
line (jaxcnn.cli.message).

    raise LayerError("groups=3 does not divide 20 input channels", layer)     # conv2 (Conv): groups=3 ...
"""


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
