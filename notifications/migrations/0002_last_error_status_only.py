"""Cut the receivers' answers out of stored delivery errors.

Before this, a failed POST kept "HTTP 404: <up to 200 characters of the answer>", shown to every
viewer; the answer could come from anywhere a channel URL pointed. Such errors become the status
and its standard phrase, "HTTP 404 Not Found" (the "gave up after N attempts: " prefix is kept);
other errors (timeouts, connection errors) never held an answer and are left as they are.
The audit log's older `channel.failing` rows are append-only and not rewritten.
"""

import re

from django.db import migrations
from httpx import codes

ANSWER = re.compile(
    r"^(?P<prefix>gave up after \d+ attempts: )?HTTP (?P<code>\d{3})(?::.*)?$", re.S
)


def cut_answers(apps, schema_editor):
    Notification = apps.get_model("notifications", "Notification")
    for row in Notification.objects.filter(last_error__contains="HTTP ").only("last_error"):
        match = ANSWER.match(row.last_error)
        if match is None:
            continue
        code = int(match["code"])
        status = f"HTTP {code} {codes.get_reason_phrase(code)}".rstrip()
        cut = f"{match['prefix'] or ''}{status}"
        if cut != row.last_error:
            Notification.objects.filter(pk=row.pk).update(last_error=cut)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_channels_and_notifications")]

    operations = [migrations.RunPython(cut_answers, migrations.RunPython.noop, elidable=True)]
