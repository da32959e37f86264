"""The issue picker of `tamma start` without `--issue`: type to filter (fuzzy), arrows to move,
a preview of the highlighted issue beside the list, Enter to start it, Esc to leave.

Built on prompt_toolkit (full-screen layout, key bindings, a terminal-independent renderer);
the fuzzy ranking is ours because it is a dozen lines and has to rank "#12 title" the way a
person scanning issue numbers and titles expects.
"""

from __future__ import annotations

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl

from tamma.models import Issue

PREVIEW_LINES = 40


def fuzzy_rank(query: str, issues: list[Issue]) -> list[Issue]:
    """Issues whose "#N title" holds the query's characters in order, best first: fewer gaps,
    then an earlier first hit, then the newer issue."""
    q = query.lower().strip()
    if not q:
        return sorted(issues, key=lambda i: -i.number)
    ranked: list[tuple[int, int, int, Issue]] = []
    for issue in issues:
        text = f"#{issue.number} {issue.title}".lower()
        pos, first, gaps = -1, -1, 0
        for ch in q:
            found = text.find(ch, pos + 1)
            if found < 0:
                break
            if first < 0:
                first = found
            elif found != pos + 1:
                gaps += 1
            pos = found
        else:
            ranked.append((gaps, first, -issue.number, issue))
    return [r[3] for r in sorted(ranked, key=lambda r: r[:3])]


async def pick_issue(issues: list[Issue], where: str) -> Issue | None:
    """Let a person choose; None when they leave without choosing."""
    query = Buffer(multiline=False)
    shown: list[list[Issue]] = [fuzzy_rank("", issues)]
    cursor = [0]

    def refilter(_: Buffer) -> None:
        shown[0] = fuzzy_rank(query.text, issues)
        cursor[0] = 0

    query.on_text_changed += refilter

    def rows() -> StyleAndTextTuples:
        out: StyleAndTextTuples = []
        for n, issue in enumerate(shown[0][:200]):
            style = "reverse" if n == cursor[0] else ""
            out.append((style, f" #{issue.number:<5} {issue.title}\n"))
        return out or [("italic", " no open issue matches\n")]

    def preview() -> StyleAndTextTuples:
        if not shown[0]:
            return []
        issue = shown[0][cursor[0]]
        head = f"#{issue.number} {issue.title}\n"
        meta = f"by {issue.author or '?'}" + (f" · {', '.join(issue.labels)}" if issue.labels else "") + "\n\n"
        body = "\n".join((issue.body or "(no description)").splitlines()[:PREVIEW_LINES])
        return [("bold", head), ("italic", meta), ("", body)]

    keys = KeyBindings()

    @keys.add("up")
    def _up(event: KeyPressEvent) -> None:
        cursor[0] = max(0, cursor[0] - 1)

    @keys.add("down")
    def _down(event: KeyPressEvent) -> None:
        cursor[0] = min(max(0, len(shown[0]) - 1), cursor[0] + 1)

    @keys.add("enter")
    def _choose(event: KeyPressEvent) -> None:
        event.app.exit(result=shown[0][cursor[0]] if shown[0] else None)

    @keys.add("escape", eager=True)
    @keys.add("c-c")
    def _leave(event: KeyPressEvent) -> None:
        event.app.exit(result=None)

    search = Window(BufferControl(query), height=1)
    layout = HSplit(
        [
            VSplit(
                [Window(FormattedTextControl(f"Open issues in {where} · search: "), dont_extend_width=True), search]
            ),
            Window(height=1, char="─"),
            VSplit(
                [
                    Window(FormattedTextControl(rows)),
                    Window(width=1, char="│"),
                    Window(FormattedTextControl(preview), wrap_lines=True),
                ]
            ),
            Window(
                FormattedTextControl("↑/↓ move · type to filter · Enter start · Esc leave"), height=1, style="reverse"
            ),
        ]
    )
    app: Application[Issue | None] = Application(
        layout=Layout(layout, focused_element=search), key_bindings=keys, full_screen=True
    )
    return await app.run_async()
