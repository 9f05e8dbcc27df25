"""Provenance as rows: a visit per journey step run (pointing at the message a send step made)
and a recipient row per campaign contact. Existing journey messages' source_ref
("journey:J/step:S/enrollment:E") become visit rows before channels drops the column."""

import django.db.models.deletion
import django.utils.timezone
import re

from django.db import migrations, models


SOURCE_REF = re.compile(r"^journey:(\d+)/step:(\d+)/enrollment:(\d+)$")


def visits_from_source_refs(apps, schema_editor):
    db = schema_editor.connection.alias
    Message = apps.get_model("channels", "Message")
    Enrollment = apps.get_model("campaigns", "Enrollment")
    JourneyStep = apps.get_model("campaigns", "JourneyStep")
    Visit = apps.get_model("campaigns", "JourneyStepVisit")
    found = []
    for message_id, source_ref, idempotency_key, created_at, status in (
        Message.objects.using(db).filter(source="journey").order_by("pk")
        .values_list("pk", "source_ref", "idempotency_key", "created_at", "status").iterator()
    ):
        match = SOURCE_REF.match(source_ref or "")
        if match:
            found.append((message_id, *map(int, match.groups()), idempotency_key or "", created_at, status))
    enrollments = Enrollment.objects.using(db).in_bulk({e for _, _, _, e, _, _, _ in found})
    steps = JourneyStep.objects.using(db).in_bulk({s for _, _, s, _, _, _, _ in found})
    visits = []
    for message_id, journey_id, step_id, enrollment_id, key, created_at, status in found:
        if enrollment_id not in enrollments:
            continue
        # The idempotency key reads "enrollment:E:N:step": N is the visit number.
        parts = key.split(":")
        number = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
        step = steps.get(step_id)
        if number is None:
            continue
        visits.append(Visit(enrollment_id=enrollment_id, journey_id=journey_id, journey_version=1,
                            step_id=step.pk if step else None, step_key=step.key if step else parts[-1],
                            step_kind="send", visit_number=number, message_id=message_id, outcome=status,
                            visited_at=created_at))
    Visit.objects.using(db).bulk_create(visits, batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0001_initial'),
        ('channels', '0002_provenance_and_own_content'),
        ('contacts', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='enrollment',
            name='journey_version',
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name='journey',
            name='version',
            field=models.PositiveIntegerField(default=1, editable=False),
        ),
        migrations.AlterField(
            model_name='enrollment',
            name='contact',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='enrollments', to='contacts.contact'),
        ),
        migrations.AlterField(
            model_name='enrollment',
            name='journey',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='enrollments', to='campaigns.journey'),
        ),
        migrations.CreateModel(
            name='CampaignRecipient',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('variant', models.CharField(blank=True, help_text='A/B variant name; blank without a test.', max_length=50)),
                ('outcome', models.CharField(choices=[('pending', 'Not sent yet'), ('sent', 'Message created'), ('holdout', 'Held out (control group)'), ('skipped', 'Left out')], default='pending', max_length=10)),
                ('skip_reason', models.CharField(blank=True, max_length=100)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='recipients', to='campaigns.campaign')),
                ('contact', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='campaign_recipients', to='contacts.contact')),
                ('message', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='campaign_recipient', to='channels.message')),
            ],
            options={
                'indexes': [models.Index(fields=['campaign', 'outcome', 'variant'], name='recipient_campaign_outcome')],
                'constraints': [models.UniqueConstraint(fields=('campaign', 'contact'), name='recipient_unique_contact')],
            },
        ),
        migrations.CreateModel(
            name='JourneyStepVisit',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('journey_version', models.PositiveIntegerField(default=1)),
                ('step_key', models.CharField(max_length=50)),
                ('step_kind', models.CharField(choices=[('send', 'Send a message'), ('wait', 'Wait'), ('condition', 'Branch on a condition'), ('exit', 'Exit')], max_length=10)),
                ('visit_number', models.PositiveIntegerField()),
                ('outcome', models.CharField(blank=True, max_length=100)),
                ('visited_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('enrollment', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='visits', to='campaigns.enrollment')),
                ('journey', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='campaigns.journey')),
                ('message', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='journey_visit', to='channels.message')),
                ('step', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='campaigns.journeystep')),
            ],
            options={
                'ordering': ['enrollment', 'visit_number'],
                'indexes': [models.Index(fields=['journey', 'step_key', 'visited_at'], name='visit_journey_step')],
                'constraints': [models.UniqueConstraint(fields=('enrollment', 'visit_number'), name='visit_unique_number')],
            },
        ),
        migrations.RunPython(visits_from_source_refs, migrations.RunPython.noop),
    ]
