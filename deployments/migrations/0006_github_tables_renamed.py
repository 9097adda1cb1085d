"""The GitHub models move to the `github` app: first their tables take that app's names (the
deliveries' release links follow), with every row in place. `github.0001` takes the models over,
then `0007` drops them from this app's state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0005_freeze_override"),
    ]

    operations = [
        migrations.AlterModelTable(name="webhookdelivery", table="github_webhookdelivery"),
        migrations.AlterModelTable(name="githubdeployment", table="github_githubdeployment"),
        migrations.AlterModelTable(name="githubstatus", table="github_githubstatus"),
        migrations.AlterModelTable(name="protectionrule", table="github_protectionrule"),
    ]
