"""The JSON bodies each kind of channel receives, built from one `Message`.

Discord and Slack get their incoming-webhook shapes; the generic webhook gets a flat object a
gateway (a KakaoTalk message bot, a pager) can map without knowing either. docs/notifications.md
shows all three.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from .models import Channel, Event

HEADLINES = {
    Event.APPROVAL_REQUESTED: ("⏳", "Approval requested", 0xB7791F),
    Event.DEPLOYMENT_SUCCEEDED: ("✅", "Deployment succeeded", 0x1F8A4C),
    Event.DEPLOYMENT_FAILED: ("❌", "Deployment failed", 0xC53030),
    Event.DEPLOYMENT_ROLLED_BACK: ("↩️", "Deployment rolled back", 0xB7791F),
    Event.COMPONENT_DOWN: ("🔴", "Component down", 0xC53030),
    Event.COMPONENT_RECOVERED: ("🟢", "Component recovered", 0x1F8A4C),
}
DETAIL_LIMIT = 1500


def absolute(path: str) -> str:
    """The page's address under GANTRY_BASE_URL; just the path while that is unset."""
    base = settings.GANTRY_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else path


@dataclass(frozen=True)
class Message:
    """What happened, independent of where it is sent."""

    event: str
    environment: str
    subject: str
    status: str
    path: str
    detail: str
    at: datetime

    @property
    def url(self):
        return absolute(self.path)

    @property
    def headline(self):
        return HEADLINES[self.event][1]

    @property
    def text(self):
        """One line for people: headline, subject, and why."""
        detail = self.detail[:DETAIL_LIMIT]
        return f"{self.headline}: {self.subject}" + (f" — {detail}" if detail else "")


def _clickable(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def discord(message: Message) -> dict:
    emoji, headline, colour = HEADLINES[message.event]
    link = f" <{message.url}>" if _clickable(message.url) else f" ({message.url})"
    embed = {
        "title": message.subject[:256],
        "description": (message.detail or headline)[:DETAIL_LIMIT],
        "color": colour,
        "timestamp": message.at.isoformat(),
        "fields": [
            {"name": "Environment", "value": message.environment, "inline": True},
            {"name": "Status", "value": message.status, "inline": True},
        ],
        "footer": {"text": "Gantry"},
    }
    if _clickable(message.url):
        embed["url"] = message.url
    return {
        "content": f"{emoji} **{headline}**: {message.subject}{link}"[:2000],
        "embeds": [embed],
        # Commit titles end up in messages: never let them ping @everyone or a role.
        "allowed_mentions": {"parse": []},
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(message: Message) -> dict:
    emoji, headline, _ = HEADLINES[message.event]
    subject = _slack_escape(message.subject)
    if _clickable(message.url):
        title = f"<{message.url}|{subject}>"
    else:
        title = f"{subject} ({_slack_escape(message.url)})"
    body = f"{emoji} *{headline}*: {title}"
    if message.detail:
        body += "\n" + _slack_escape(message.detail[:DETAIL_LIMIT])
    context = f"{message.environment} · {message.status} · {message.at:%Y-%m-%d %H:%M:%S %Z}"
    return {
        "text": _slack_escape(f"{emoji} {headline}: {message.subject} — {message.url}"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}]},
        ],
    }


def webhook(message: Message) -> dict:
    return {
        "event": message.event,
        "environment": message.environment,
        "subject": message.subject,
        "status": message.status,
        "url": message.url,
        "message": message.text,
        "at": message.at.isoformat(),
    }


RENDERERS = {
    Channel.Kind.DISCORD: discord,
    Channel.Kind.SLACK: slack,
    Channel.Kind.WEBHOOK: webhook,
}


def render(kind: str, message: Message) -> dict:
    """The body for a channel of `kind`; ValueError for a kind Gantry does not know."""
    renderer = RENDERERS.get(kind)
    if renderer is None:
        raise ValueError(f"no payload for channel kind {kind!r}")
    return renderer(message)
