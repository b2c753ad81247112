"""A net's graph as a picture: one box per layer with its type and output shape, an arrow per blob it reads,
drawn by Graphviz (the `graphviz` package and Graphviz's `dot` program).

    >>> from jaxcnn import Conv, Net, ReLU, draw
    >>> net = Net([Conv("conv1", 20, 5), ReLU("relu1")], (28, 28, 1), name="tiny")
    >>> dot = draw.graph(net)           # a graphviz.Digraph: dot.render(outfile="net.svg") draws it (or .png, .pdf)
    >>> print(dot.source)
    digraph tiny {
    ...
        input0 [label="data
    28x28x1" ...]
        layer0 [label="conv1
    Conv
    24x24x20" ...]
        input0 -> layer0
    ...
        layer0 -> layer1
    }

`render(net, "net.svg")` writes the picture (Graphviz's `dot` drawing it).
"""
from .net import Graph

INPUT_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#e8f0fe"}
LAYER_STYLE = {"shape": "box", "style": "rounded,filled", "fillcolor": "#f6f6f6", "fontname": "Helvetica"}


def _shape(shape):
    if shape and isinstance(shape[0], tuple):
        return " ".join("x".join(map(str, s)) for s in shape)
    return "x".join(map(str, shape))


def graph(net: Graph, input_shape=None):
    """A graphviz.Digraph of `net` at a per-example input_shape (default the net's): input blobs as ellipses,
    layers as boxes labelled name, type and output shape, edges from the layer that last wrote each blob a
    layer reads (branches and joins show as forks and merges)."""
    import graphviz  # the `draw` extra

    dot = graphviz.Digraph(net.name, graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    writer = {}
    for i, (blob, shape) in enumerate(net.input_shapes(input_shape).items()):
        node = f"input{i}"  # node ids without ':' (Graphviz reads it as a port)
        dot.node(node, f"{blob}\n{_shape(shape)}", **INPUT_STYLE)
        writer[blob] = node
    for i, row in enumerate(net.shapes(input_shape)):
        node = f"layer{i}"
        dot.node(node, f"{row.layer.name}\n{type(row.layer).__name__}\n{_shape(row.out_shape)}", **LAYER_STYLE)
        for blob in row.inputs:
            dot.edge(writer[blob], node, label=blob if len(row.inputs) > 1 else None)
        for blob in row.outputs:
            writer[blob] = node
    return dot


def render(net: Graph, path, input_shape=None) -> str:
    """Draw `net` to `path`; its extension (.svg, .png, .pdf, ...) picks the format. -> the path written.
    Raises graphviz.ExecutableNotFound when Graphviz's `dot` is not installed."""
    path = str(path)
    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if not fmt:
        raise ValueError(f"{path}: give the picture a file extension (.svg, .png, .pdf)")
    return graph(net, input_shape).render(outfile=path, format=fmt, cleanup=True)
