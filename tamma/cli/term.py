"""The one Console the CLI prints through: text that reaches the terminal carries no control
sequence but Rich's own styling.

Issue titles, comments, test output, model answers and error messages are written by people and
programs Tamma does not trust. Rich strips only a few control characters (BEL, BS, VT, FF, CR)
and passes ESC through, so a test could print `ESC ] 52 ;` (write the clipboard), retitle the
window, clear the screen or hide lines. Every text segment is cleaned after layout, whatever
renderable (markup string, Text, Table, Panel, Live) it came from; Rich's styles and cursor
moves are separate (styled or control) segments and are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: 8-bit CSI, OSC...)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A whole ESC sequence (CSI ... final, OSC ... BEL/ST, two-byte ESC X): removed as one, so no
# visible remnant such as "[2J" is left behind.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI (7- and 8-bit)
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x00-\x1f\x7f-\x9f]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS...
    r"|\x1b[ -/]*[0-~]"  # any other ESC sequence
)


def strip_controls(text: str) -> str:
    """`text` without terminal control sequences or control characters (tab and newline kept)."""
    return _CONTROLS.sub("", _SEQUENCE.sub("", text))


class SafeConsole(Console):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("highlight", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        # before markup is parsed: a sequence must not be read as a tag ("\x1b[H...]")
        return super().render_str(strip_controls(text), **kwargs)

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            # a Text built from untrusted input, or a Table cell: cleaned after layout
            if segment.control is None and segment.text and _CONTROLS.search(segment.text):
                yield Segment(strip_controls(segment.text), segment.style)
            else:
                yield segment
