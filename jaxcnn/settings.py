"""Errors that name the settings a caller gives, in the caller's own words: str() writes a setting as Python passes
it (`data_dir=DIR`, `input_shape=(H, W, C)`); a command line writes the same error with its flags
(`--data-dir DIR`, `--input-shape H,W,C`: jaxcnn.cli), so the library never names a flag.

    >>> from jaxcnn.settings import MissingSetting, Setting
    >>> error = MissingSetting(["lenet: the net has no default input shape: give ",
    ...                         Setting("input_shape", ("H", "W", "C"))], setting="input_shape")
    >>> print(error)
    lenet: the net has no default input shape: give input_shape=(H, W, C)
    >>> from jaxcnn.cli import words
    >>> print(error.text(words))                                     # each Setting written as a flag
    lenet: the net has no default input shape: give --input-shape H,W,C
"""
from typing import Callable, NamedTuple


class Setting(NamedTuple):
    """A setting named in a message: its keyword and the value given, a placeholder for one ('DIR', ('H', 'W',
    'C')), or None for the bare name."""

    name: str
    value: object = None

    def keyword(self) -> str:
        """As Python passes it: 'data_dir=/data', 'input_shape=(H, W, C)', or the bare name 'data_dir'."""
        if self.value is None:
            return self.name
        value = f"({', '.join(map(str, self.value))})" if isinstance(self.value, tuple) else self.value
        return f"{self.name}={value}"


class SettingError(Exception):
    """An error whose message names settings. parts: the message as text and Setting values, in order; setting:
    the name of the setting the caller must change (given wrong, or missing), or None when the message only
    suggests settings. str(): the settings as keywords; text(write): each written by write(Setting) -> str."""

    def __init__(self, parts, setting: str | None = None):
        self.parts, self.setting = tuple(parts), setting
        super().__init__(self.text(Setting.keyword))

    def text(self, write: Callable[[Setting], str]) -> str:
        return "".join(write(p) if isinstance(p, Setting) else str(p) for p in self.parts)


class MissingSetting(SettingError, ValueError):
    """A setting that has no default here and was not given."""
