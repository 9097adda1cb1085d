"""The GitHub models now live in the `github` app (see deployments.0006 and github.0001):
forget them here, in Django's state only; their tables and rows belong to `github`."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0006_github_tables_renamed"),
        ("github", "0001_moved_from_deployments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveField(
                    model_name="githubstatus",
                    name="link",
                ),
                migrations.RemoveField(
                    model_name="protectionrule",
                    name="delivery",
                ),
                migrations.RemoveField(
                    model_name="protectionrule",
                    name="deployment",
                ),
                migrations.RemoveField(
                    model_name="protectionrule",
                    name="environment",
                ),
                migrations.RemoveField(
                    model_name="webhookdelivery",
                    name="releases",
                ),
                migrations.DeleteModel(
                    name="GitHubDeployment",
                ),
                migrations.DeleteModel(
                    name="GitHubStatus",
                ),
                migrations.DeleteModel(
                    name="ProtectionRule",
                ),
                migrations.DeleteModel(
                    name="WebhookDelivery",
                ),
            ],
        ),
    ]
