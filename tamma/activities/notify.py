"""Notifications for other systems: a task's state change POSTed to a generic webhook (JSON,
HMAC-SHA256 signed like GitHub's own deliveries) and/or a Slack incoming webhook. An activity, so
a receiver that is down is retried by Temporal and never blocks or fails the task."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from temporalio import activity

from tamma import activity_names as names
from tamma.activities.errors import temporal_errors
from tamma.config.schema import NotifySettings
from tamma.errors import PlatformError
from tamma.models import TaskEvent
from tamma.version import user_agent

SIGNATURE_HEADER = "X-Tamma-Signature-256"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_text(e: TaskEvent) -> str:
    title = f" {e.issue_title}" if e.issue_title else ""
    line = f"Tamma: #{e.issue}{title} ({e.repository}) is *{e.status}*"
    if e.reason:
        line += f": {e.reason[:300]}"
    if e.pull_request:
        line += f"\n{e.pull_request}"
    return line


class Notifier:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    @activity.defn(name=names.NOTIFY)
    @temporal_errors
    async def notify(self, event: TaskEvent) -> int:
        """Send `event` to every configured target; returns how many took it."""
        s = self.settings
        sent = 0
        async with httpx.AsyncClient(
            timeout=s.timeout_s, follow_redirects=False, headers={"User-Agent": user_agent()}
        ) as http:
            if s.webhook_url:
                body = event.model_dump_json().encode()
                headers = {
                    "content-type": "application/json",
                    "user-agent": "Tamma-Notifier",
                    "x-tamma-event": f"task.{event.status}",
                    # the same for every retry of this notification: receivers drop repeats by it
                    "x-tamma-delivery": f"{event.task}/{event.sequence}",
                }
                if s.webhook_secret is not None:
                    headers[SIGNATURE_HEADER] = signature(s.webhook_secret.get_secret_value(), body)
                await self._post(http, s.webhook_url, body, headers, "the notification webhook")
                sent += 1
            if s.slack_webhook_url is not None:
                body = json.dumps({"text": slack_text(event)}).encode()
                await self._post(
                    http,
                    s.slack_webhook_url.get_secret_value(),
                    body,
                    {"content-type": "application/json"},
                    "the Slack webhook (notify.slack_webhook_url)",
                )
                sent += 1
        return sent

    @staticmethod
    async def _post(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], what: str) -> None:
        try:
            resp = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:  # the URL is not named: a Slack URL is a secret
            raise PlatformError(f"{what} did not answer ({type(exc).__name__})") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise PlatformError(f"{what} answered {resp.status_code}")
        if resp.status_code >= 300:
            raise PlatformError(
                f"{what} refused the notification ({resp.status_code}); check the URL and secret", retryable=False
            )
