"""A net with its weights, out of jaxcnn: an ONNX graph of native operators for the runtimes people deploy with
(jaxcnn.export.onnx) and a StableHLO artefact of jax.export (jaxcnn.export.stablehlo).

`jaxcnn.export.stablehlo.save_stablehlo(net, params, state, "lenet.stablehlo")` writes the artefact (its docstring
has the example) and `jaxcnn.export.onnx.save_onnx(net, params, state, "lenet.onnx")` the ONNX graph, its NCHW
input named as the net's input blob. Both need the `export` extra.

Both write their file whole or not at all.
"""
import os
import secrets
from pathlib import Path


def write_atomic(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it, fsynced and renamed over it: a failure leaves
    whatever was at `path` before (and no temporary file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's permissions, as open() gives
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
