"""Running journeys get version 1, snapshotted from their current steps, and their enrollments
and step visits point at it; enrollments keep their place as the key of their current step,
since a draft may remove or rename the step row later. (A migration of its own: PostgreSQL
refuses to alter a table, 0003's deferred indexes included, in the transaction that updated its
rows under deferred foreign key checks.)"""
import django.utils.timezone
from django.db import migrations
from django.db.models import OuterRef, Subquery

RUNNING = ("active", "paused")
VARIANT_FIELDS = ("channel", "locale", "subject", "preheader", "text_body", "html_body", "title",
                  "provider_template_id")


def _audit(AuditEntry, db, action, object_type, object_id, data, now):
    AuditEntry.objects.using(db).create(occurred_at=now, actor_label="system:migration", action=action,
                                        object_type=object_type, object_id=str(object_id), data=data)


def _published_version(apps, db, template, now):
    """The template's latest version; publishing the draft, as the tick used to do on its own, when
    a running journey sends a template nobody published yet."""
    TemplateVersion = apps.get_model("message_templates", "TemplateVersion")
    version = TemplateVersion.objects.using(db).filter(template=template).order_by("-number").first()
    if version is not None:
        return version
    variants = [
        {field: getattr(variant, field) for field in VARIANT_FIELDS}
        for variant in template.variants.using(db).order_by("channel", "locale")
    ]
    version = TemplateVersion.objects.using(db).create(
        template=template, number=1, variants=variants, purpose=template.purpose,
        allow_fallback=template.allow_fallback, default_locale=template.default_locale, published_at=now,
    )
    _audit(apps.get_model("omni", "AuditEntry"), db, "template.published", "message_templates.templateversion",
           version.pk, {"template": template.key, "version": 1}, now)
    return version


def _step_key(journey, target):
    if target is None:
        return None
    return target.key if target.journey_id == journey.pk else f"{target.journey.slug}:{target.key}"


def snapshot_running_journeys(apps, schema_editor):
    db = schema_editor.connection.alias
    Journey = apps.get_model("campaigns", "Journey")
    JourneyStep = apps.get_model("campaigns", "JourneyStep")
    JourneyVersion = apps.get_model("campaigns", "JourneyVersion")
    Enrollment = apps.get_model("campaigns", "Enrollment")
    Visit = apps.get_model("campaigns", "JourneyStepVisit")
    AuditEntry = apps.get_model("omni", "AuditEntry")
    now = django.utils.timezone.now()

    Enrollment.objects.using(db).filter(current_step__isnull=False).update(current_step_key=Subquery(
        JourneyStep.objects.using(db).filter(pk=OuterRef("current_step_id")).values("key")[:1]
    ))
    for journey in Journey.objects.using(db).filter(status__in=RUNNING).order_by("pk"):
        steps = list(
            JourneyStep.objects.using(db).filter(journey=journey)
            .select_related("template", "next_step__journey", "else_step__journey").order_by("position", "pk")
        )
        rows = []
        for step in steps:
            version = _published_version(apps, db, step.template, now) if step.template_id else None
            rows.append({
                "key": step.key, "kind": step.kind, "position": step.position, "config": step.config or {},
                "template": step.template_id, "template_key": step.template.key if step.template_id else "",
                "template_version": version.pk if version else None,
                "template_version_number": version.number if version else None,
                "purpose": step.purpose, "urgency": step.urgency, "channel_plan": step.channel_plan or [],
                "intent_key": step.intent_key, "next": _step_key(journey, step.next_step),
                "else": _step_key(journey, step.else_step),
            })
        version = JourneyVersion.objects.using(db).create(
            journey=journey, number=1, trigger_type=journey.trigger_type, trigger_event=journey.trigger_event,
            trigger_conditions=journey.trigger_conditions or {}, trigger_segment_id=journey.trigger_segment_id,
            goal_event=journey.goal_event, reentry=journey.reentry,
            reentry_after_seconds=journey.reentry_after_seconds, steps=rows, published_at=now,
        )
        Journey.objects.using(db).filter(pk=journey.pk).update(live_version=version)
        Enrollment.objects.using(db).filter(journey=journey).update(journey_version=version)
        Visit.objects.using(db).filter(journey=journey).update(journey_version=version)
        _audit(AuditEntry, db, "journey.published", "campaigns.journeyversion", version.pk,
               {"journey": journey.pk, "version": 1, "steps": len(rows), "by": "migration"}, now)


def back_to_numbers(apps, schema_editor):
    db = schema_editor.connection.alias
    JourneyStep = apps.get_model("campaigns", "JourneyStep")
    JourneyVersion = apps.get_model("campaigns", "JourneyVersion")
    Enrollment = apps.get_model("campaigns", "Enrollment")
    Visit = apps.get_model("campaigns", "JourneyStepVisit")
    number = Subquery(JourneyVersion.objects.using(db).filter(pk=OuterRef("journey_version_id")).values("number")[:1])
    step = Subquery(JourneyStep.objects.using(db).filter(journey_id=OuterRef("journey_id"), key=OuterRef("current_step_key"))
                    .values("pk")[:1])
    Enrollment.objects.using(db).filter(journey_version__isnull=False).update(journey_version_number=number)
    Enrollment.objects.using(db).exclude(current_step_key="").update(current_step=step)
    Visit.objects.using(db).filter(journey_version__isnull=False).update(journey_version_number=number)


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0003_journey_versions'),
        ('message_templates', '0001_initial'),
        ('omni', '0003_audit_chain'),
    ]

    operations = [
        migrations.RunPython(snapshot_running_journeys, back_to_numbers),
    ]
