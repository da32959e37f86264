"""What an issue event means for a task, on both forges (the interpretation alone; the flows over
real sockets are in test_webhook_flow.py)."""

from __future__ import annotations

import copy
from typing import Any

from tamma.api.events import github_action, gitlab_action
from tamma.config import WebhookSettings
from tests.api.conftest import load

CFG = WebhookSettings(bot_login="tamma-bot")


def gitlab_update(changes: dict[str, Any], assignees: list[str]) -> dict[str, Any]:
    p = copy.deepcopy(load("gitlab/issue_hook/issue_open.json"))
    p["object_attributes"]["action"] = "update"
    p["changes"] = changes
    p["assignees"] = [{"username": u} for u in assignees]
    return p


def test_gitlab_description_edit_signals_an_edit() -> None:
    action = gitlab_action(
        "Issue Hook", gitlab_update({"description": {"previous": "a", "current": "b"}}, ["tamma-bot"]), CFG
    )
    assert (action.kind, action.signal, action.text, action.reason) == (
        "signal",
        "issue_changed",
        "edited",
        "description edited",
    )


def test_gitlab_unassigning_the_bot_stops_and_assigning_it_starts() -> None:
    before = {"previous": [{"username": "tamma-bot"}], "current": []}
    unassigned = gitlab_action("Issue Hook", gitlab_update({"assignees": before}, []), CFG)
    assert (unassigned.kind, unassigned.text) == ("signal", "unassigned")
    after = {"previous": [], "current": [{"username": "tamma-bot"}]}
    assert gitlab_action("Issue Hook", gitlab_update({"assignees": after}, ["tamma-bot"]), CFG).kind == "start"


def test_github_edit_deleted_and_other_edits() -> None:
    p = copy.deepcopy(load("github/issues/edited.json"))
    p["changes"] = {"title": {"from": "old"}, "body": {"from": "old"}}
    edited = github_action("issues", p, CFG)
    assert (edited.kind, edited.text, edited.reason) == ("signal", "edited", "body and title edited")
    deleted = github_action("issues", copy.deepcopy(load("github/issues/deleted.json")), CFG)
    assert (deleted.kind, deleted.signal, deleted.text) == ("signal", "issue_changed", "deleted")
    p["changes"] = {}
    assert github_action("issues", p, CFG).kind == "ignore"
