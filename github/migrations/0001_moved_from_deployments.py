"""The GitHub models, moved here from `deployments` without touching a row.

`deployments.0006` renamed their tables (and the deliveries' release links) to this app's names;
this migration only tells Django's state that the models now live here, renames the one index
to this app's name, and moves their content types, so permissions already given (roles, users)
and admin history follow the models.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

MODELS = ["webhookdelivery", "githubdeployment", "githubstatus", "protectionrule"]
OLD_INDEX = "deployments_reposit_91ecfa_idx"
NEW_INDEX = "github_prot_reposit_481dca_idx"


def _move_content_types(apps, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def content_types_forwards(apps, schema_editor):
    _move_content_types(apps, "deployments", "github")


def content_types_backwards(apps, schema_editor):
    _move_content_types(apps, "github", "deployments")


def _rename_index(apps, schema_editor, old, new):
    model = apps.get_model("github", "ProtectionRule")
    fields = ["repository", "sha"]
    schema_editor.rename_index(
        model, models.Index(fields=fields, name=old), models.Index(fields=fields, name=new)
    )


def index_forwards(apps, schema_editor):
    _rename_index(apps, schema_editor, OLD_INDEX, NEW_INDEX)


def index_backwards(apps, schema_editor):
    _rename_index(apps, schema_editor, NEW_INDEX, OLD_INDEX)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("deployments", "0006_github_tables_renamed"),
        ("environments", "0006_freeze_windows"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='GitHubDeployment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('lease_until', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.TextField(blank=True, help_text="GitHub's last refusal, if any")),
                        ('repository', models.CharField(help_text='owner/name on GitHub', max_length=140)),
                        ('environment', models.CharField(help_text='GitHub environment name', max_length=100)),
                        ('github_id', models.BigIntegerField(blank=True, help_text="GitHub's deployment id", null=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('deployment', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='github', to='deployments.deployment')),
                    ],
                    options={
                        'verbose_name': 'GitHub deployment',
                    },
                ),
                migrations.CreateModel(
                    name='GitHubStatus',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('state', models.CharField(choices=[('queued', 'Queued'), ('in_progress', 'In progress'), ('success', 'Success'), ('failure', 'Failure'), ('error', 'Error'), ('inactive', 'Inactive')], max_length=11)),
                        ('gantry_state', models.CharField(choices=[('pending_approval', 'Waiting for approval'), ('queued', 'Queued'), ('promoting', 'Promoting image'), ('rolling_out', 'Rolling out'), ('verifying', 'Verifying'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('rolling_back', 'Rolling back'), ('rolled_back', 'Rolled back'), ('cancelled', 'Cancelled'), ('superseded', 'Superseded'), ('rejected', 'Rejected')], max_length=16)),
                        ('description', models.CharField(blank=True, max_length=140)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('posted_at', models.DateTimeField(blank=True, null=True)),
                        ('github_id', models.BigIntegerField(blank=True, null=True)),
                        ('link', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='statuses', to='github.githubdeployment')),
                    ],
                    options={
                        'verbose_name': 'GitHub deployment status',
                        'verbose_name_plural': 'GitHub deployment statuses',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='WebhookDelivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('guid', models.CharField(blank=True, max_length=64, null=True, unique=True)),
                        ('claimed_guid', models.CharField(blank=True, help_text='id a rejected call sent', max_length=64)),
                        ('event', models.CharField(blank=True, max_length=64)),
                        ('action', models.CharField(blank=True, max_length=64)),
                        ('repository', models.CharField(blank=True, max_length=140)),
                        ('outcome', models.CharField(choices=[('rejected', 'Rejected (signature)'), ('invalid', 'Invalid payload'), ('ignored', 'Ignored'), ('pong', 'Ping answered'), ('accepted', 'Accepted, resolving images'), ('recorded', 'Protection rule recorded'), ('released', 'Release created'), ('failed', 'Failed')], max_length=8)),
                        ('detail', models.TextField(blank=True)),
                        ('payload', models.JSONField(blank=True, null=True)),
                        ('remote_addr', models.GenericIPAddressField(blank=True, null=True)),
                        ('received_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('releases', models.ManyToManyField(blank=True, related_name='deliveries', to='deployments.release')),
                    ],
                    options={
                        'verbose_name_plural': 'webhook deliveries',
                        'ordering': ['-received_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='ProtectionRule',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('lease_until', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.TextField(blank=True, help_text="GitHub's last refusal, if any")),
                        ('repository', models.CharField(max_length=140)),
                        ('sha', models.CharField(max_length=40, verbose_name='commit')),
                        ('ref', models.CharField(blank=True, max_length=255)),
                        ('github_environment', models.CharField(help_text='the name GitHub sent', max_length=255)),
                        ('callback_url', models.URLField(max_length=500)),
                        ('github_deployment_id', models.BigIntegerField(blank=True, null=True)),
                        ('verdict', models.CharField(choices=[('waiting', 'Waiting for Gantry'), ('approved', 'Approved'), ('rejected', 'Rejected')], default='waiting', max_length=8)),
                        ('comment', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('decided_at', models.DateTimeField(blank=True, null=True)),
                        ('answered_at', models.DateTimeField(blank=True, null=True)),
                        ('deployment', models.ForeignKey(blank=True, help_text='the Gantry deployment whose approval GitHub waits for', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='protection_rules', to='deployments.deployment')),
                        ('environment', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='protection_rules', to='environments.environment')),
                        ('delivery', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='protection_rule', to='github.webhookdelivery')),
                    ],
                    options={
                        'ordering': ['-created_at', '-id'],
                        'indexes': [models.Index(fields=['repository', 'sha'], name='github_prot_reposit_481dca_idx')],
                    },
                ),
            ],
        ),
        # DDL: outside a transaction where the database cannot roll DDL back (MySQL).
        migrations.RunPython(index_forwards, index_backwards, atomic=False),
        migrations.RunPython(content_types_forwards, content_types_backwards),
    ]
