"""What the three command lines share: the parser (defaults shown, examples in an epilog,
``--version``), argument types that name what they expect, and defaults read from the config
dataclasses so that ``--help`` and the Python API cannot disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

__all__ = ["make_parser", "default_of", "positive_int", "non_negative_int", "version"]


def version() -> str:
    """The installed ``hamflow`` distribution's version (``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("hamflow")
    except PackageNotFoundError:
        return "unknown"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (not None or False), keeps the text's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)".strip()
        return text


def make_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with defaults in ``--help``, ``examples`` as epilog, ``--version``."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + examples.rstrip() + "\n",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (hamflow {version()})")
    return p


def default_of(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (the one source of CLI defaults).

    Example:
        >>> from hamflow_hgn.config import TrainConfig
        >>> default_of(TrainConfig, "batch_size")
        16
    """
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    parse.__doc__ = f"argparse type: an integer >= {minimum}, or a usage error saying so."
    return parse


positive_int = _int_at_least(1)
"""argparse type: an integer >= 1."""
non_negative_int = _int_at_least(0)
"""argparse type: an integer >= 0."""
