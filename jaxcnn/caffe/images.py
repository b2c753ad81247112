"""Image files as Caffe's tools see them through OpenCV: decoded to uint8 (H, W, C) in OpenCV's channel order (BGR,
BGRA, or one gray channel), and resized with OpenCV's bilinear rule (cv::resize INTER_LINEAR: pixel centres aligned,
no antialiasing), as Caffe's ImageData layer and encoded Datums have them. Pillow decodes (pixels may differ from
OpenCV's by the decoders' rounding, e.g. of JPEG); the resize is within one grey level of OpenCV's fixed-point
arithmetic.
"""
import io

import numpy as np

from ..errors import CaffeFormatError


def decode_image(data, mode: str | None, what) -> np.ndarray:
    """Image file bytes (or a path) -> uint8 (H, W, C) as OpenCV's imdecode gives them to Caffe: mode 'color' (3
    channels, BGR), 'gray' (1 channel) or None (as stored: gray 1, color 3 in BGR, with alpha 4 in BGRA).
    CaffeFormatError naming `what` when Pillow cannot decode it."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            if mode == "gray" and img.format == "JPEG":
                img.draft("L", img.size)  # libjpeg's own gray output, as OpenCV's IMREAD_GRAYSCALE
            target = {"color": "RGB", "gray": "L"}.get(mode) or _NATIVE.get(img.mode)
            if target is None and img.mode == "P":
                target = "RGBA" if "transparency" in img.info else "RGB"
            if target is None:
                raise CaffeFormatError(str(what), f"image mode {img.mode} is not supported (8-bit gray, RGB or RGBA)")
            array = np.asarray(img.convert(target))
    except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
        if isinstance(e, CaffeFormatError):
            raise
        raise CaffeFormatError(str(what), f"not an image Pillow can decode ({e})") from None
    if array.ndim == 2:
        return array[..., None]
    return np.ascontiguousarray(array[..., [2, 1, 0, 3][:array.shape[-1]]])  # RGB(A) -> BGR(A)


_NATIVE = {"L": "L", "1": "L", "RGB": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "RGBA": "RGBA", "LA": "RGBA"}


def encode_image(image, fmt: str = "png") -> bytes:
    """uint8 (H, W, C) in Caffe's order (BGR, BGRA or gray) -> image file bytes ('png' or 'jpeg'): the inverse of
    decode_image (exactly, for png)."""
    from PIL import Image
    image = np.asarray(image, np.uint8)
    channels = image.shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(f"encode_image: expected 1, 3 or 4 channels, got {image.shape}")
    pixels = image[..., 0] if channels == 1 else image[..., [2, 1, 0, 3][:channels]]
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format=fmt.upper())
    return out.getvalue()


def _linear_taps(size_in: int, size_out: int):
    """OpenCV's INTER_LINEAR sampling along one axis: source index i0 (size_out,), the next one i1, and the weight
    w of i1 (that of i0 is 1 - w): centres aligned, x = (d + 0.5) * size_in / size_out - 0.5, clamped at the
    edges (a tap outside gets weight 0)."""
    x = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    i0 = np.floor(x).astype(np.int64)
    w = x - i0
    w[i0 < 0], i0[i0 < 0] = 0.0, 0
    last = i0 >= size_in - 1
    w[last], i0[last] = 0.0, size_in - 1
    return i0, np.minimum(i0 + 1, size_in - 1), w


def resize_linear(image, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (height, width, C), bilinear as OpenCV's cv::resize (INTER_LINEAR), which Caffe's
    ImageData uses for new_height/new_width: equal to it within 1 (OpenCV rounds its weights to 11 bits)."""
    y0, y1, wy = _linear_taps(image.shape[0], height)
    x0, x1, wx = _linear_taps(image.shape[1], width)
    img = image.astype(np.float64)
    wx = wx[None, :, None]
    rows0 = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    rows1 = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = rows0 * (1 - wy)[:, None, None] + rows1 * wy[:, None, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
