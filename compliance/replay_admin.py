"""The replay page before a quiet-hours rule or a frequency cap is saved or deleted in the admin.

Saving the rule's form (add or change) or confirming its deletion first starts a policy replay
(compliance/replay.py, a Celery task) of the values posted, and shows its page: the progress,
then more or fewer allowed, deferred and dropped per channel and purpose with example decisions.
Its confirm button posts the same values again with the run's id, and only then does the admin's
own audited save or delete run. Nothing is saved by the preview; a cancel leaves the rule as it is.

A confirm is honoured only for a finished run of the same user, rule (at the same version) and
action whose kept form data equal what is posted: values changed in between, or the rule changed
by someone else since, are replayed again, never saved unseen.
"""
from django.contrib import messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from omni.choices import Channel, Purpose
from omni.lib.progress import Progress, ProgressSegment

from . import replay
from .tasks import start_replay
from .models import ReplayRun, ReplayStatus

RUN_FIELD = "_replay_run"
# What the form posts that is not the rule's values.
NOT_PROPOSED = frozenset({"csrfmiddlewaretoken", RUN_FIELD})
REPLAY_PERMISSION = "compliance.add_replayrun"
# The page reloads itself this often while the replay runs (its bar is redrawn in between).
RELOAD_SECONDS = 2
OUTCOME_WORDS = {"allow": "allowed", "defer": "deferred", "suppress": "dropped"}


def posted_values(request) -> dict:
    """The form's values as posted, as JSON: {name: [values]} (a checkbox list has several)."""
    return {name: request.POST.getlist(name) for name in sorted(request.POST) if name not in NOT_PROPOSED}


class ReplayPreviewMixin:
    """For AuditedRuleAdmin: a replay is shown and confirmed before a replayable rule is saved or deleted."""

    def _replayed(self) -> bool:
        return replay.replays(self.model)

    def get_urls(self):
        if not self._replayed():
            return super().get_urls()
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("replay/<int:run_id>/", view(self.replay_view), name="%s_%s_replay" % info),
            path("replay/<int:run_id>/progress/", view(self.replay_progress_view), name="%s_%s_replay_progress" % info),
            *super().get_urls(),
        ]

    def get_actions(self, request):
        found = super().get_actions(request)
        if self._replayed():
            # Deleting goes through each rule's own page, where its replay is shown first.
            found.pop("delete_selected", None)
        return found

    # --- intercepting the save and the delete ----------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and self._replayed() and "_saveasnew" not in request.POST:
            obj = self.get_object(request, unquote(object_id)) if object_id else None
            action = replay.CHANGE if object_id else replay.ADD
            if (obj is not None or action == replay.ADD) and not self._confirmed(request, obj, action):
                allowed = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
                if not allowed:
                    raise PermissionDenied
                form = self._form(request, obj)
                if form.is_valid():
                    return self._start(request, replay.proposal_of(form.instance, action))
                # Refused values: the admin shows the form with its errors, nothing saved.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        if request.method == "POST" and self._replayed():
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and not self._confirmed(request, obj, replay.DELETE):
                if not self.has_delete_permission(request, obj):
                    raise PermissionDenied
                return self._start(request, replay.proposal_of(obj, replay.DELETE))
        return super().delete_view(request, object_id, extra_context)

    def _form(self, request, obj):
        fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        form_class = self.get_form(request, obj, change=obj is not None, fields=fields)
        return form_class(request.POST, request.FILES, instance=obj)

    def _start(self, request, proposal):
        if not request.user.has_perm(REPLAY_PERMISSION):
            raise PermissionDenied
        run = start_replay(proposal, actor=request.user, form_data=posted_values(request))
        return HttpResponseRedirect(reverse(self._url("replay"), args=[run.pk]))

    def _confirmed(self, request, obj, action) -> bool:
        run_id = request.POST.get(RUN_FIELD, "")
        if not run_id.isdigit():
            return False
        run = ReplayRun.objects.filter(pk=int(run_id), created_by=request.user, status=ReplayStatus.DONE).first()
        if run is None:
            return False
        proposal = run.proposal
        # The replay compared against the rule as it was then: changed since, the page read is stale.
        return (proposal.get("model") == self.opts.label_lower and proposal.get("action") == action
                and proposal.get("rule_id") == (obj.pk if obj is not None else None)
                and (obj is None or proposal.get("version") == obj.version)
                and proposal.get("form_data") == posted_values(request))

    def _url(self, name: str) -> str:
        return f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}"

    # --- the replay's page -------------------------------------------------------------------------

    def _run(self, request, run_id) -> ReplayRun:
        if not (request.user.has_perm(REPLAY_PERMISSION.replace(".add_", ".view_"))
                and self.has_view_permission(request)):
            raise PermissionDenied
        run = get_object_or_404(ReplayRun, pk=run_id)
        if run.proposal.get("model") != self.opts.label_lower:
            raise Http404("No such replay of this kind of rule.")
        return run

    def replay_progress_view(self, request, run_id):
        run = self._run(request, run_id)
        return JsonResponse({"status": run.status, **progress_of(run).as_json()})

    def replay_view(self, request, run_id):
        run = self._run(request, run_id)
        proposal = run.proposal
        action = proposal["action"]
        rule_id = proposal.get("rule_id")
        obj = self.model._default_manager.filter(pk=rule_id).first() if rule_id else None
        if action == replay.DELETE:
            confirm_url = reverse(self._url("delete"), args=[obj.pk]) if obj else None
        elif action == replay.CHANGE:
            confirm_url = reverse(self._url("change"), args=[obj.pk]) if obj else None
        else:
            confirm_url = reverse(self._url("add"))
        if obj is None and action != replay.ADD:
            messages.warning(request, "The rule was deleted since: there is nothing to save.")
        back = reverse(self._url("change"), args=[obj.pk]) if obj else reverse(self._url("changelist"))
        running = run.status in (ReplayStatus.QUEUED, ReplayStatus.RUNNING)
        verb = {replay.ADD: "Add", replay.CHANGE: "Change", replay.DELETE: "Delete"}[action]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "original": obj, "run": run, "running": running,
            "title": f"{verb} {self.opts.verbose_name} {proposal['fields'].get('name', '')!s}: replay of the last "
                     f"{(run.until - run.since).days} days",
            "progress": progress_of(run),
            "progress_url": reverse(self._url("replay_progress"), args=[run.pk]),
            "reload_seconds": RELOAD_SECONDS,
            "proposed": proposed_words(self.model, proposal, obj),
            "summary": summary_of(run.result) if run.status == ReplayStatus.DONE else None,
            "form_data": [(name, value) for name, values in proposal.get("form_data", {}).items() for value in values],
            "run_field": RUN_FIELD,
            "confirm_url": confirm_url if run.status == ReplayStatus.DONE and request.user == run.created_by else None,
            "confirm_label": {replay.ADD: "Add the rule", replay.CHANGE: "Save the change",
                              replay.DELETE: "Delete the rule"}[action],
            "back_url": back,
        }
        return TemplateResponse(request, "admin/compliance/replay.html", context)


def progress_of(run: ReplayRun) -> Progress:
    figures = (run.result or {}).get("progress", {})
    return Progress(label="Decisions replayed", total=run.total, remaining_label="not replayed yet", segments=[
        ProgressSegment("unchanged", "decided the same", figures.get("unchanged", 0)),
        ProgressSegment("changed", "decided otherwise", figures.get("changed", 0)),
        ProgressSegment("not_replayable", "not replayable", figures.get("not_replayable", 0)),
    ])


def _label(choices, value) -> str:
    return choices(value).label if value in choices.values else (value or "all")


def proposed_words(model, proposal: dict, obj) -> list[tuple[str, str, str]]:
    """(field, now, proposed) for each field of the rule, as the page lists them ("—": no rule)."""
    rows = []
    fields = proposal.get("fields", {})
    for name in replay.RULE_FIELDS[proposal["model"]]:
        label = str(model._meta.get_field(name).verbose_name)
        now = getattr(obj, name) if obj is not None else None
        now = now.isoformat() if hasattr(now, "isoformat") else now
        after = None if proposal["action"] == replay.DELETE else fields.get(name)
        rows.append((label, "—" if obj is None else _shown(now),
                     "—" if proposal["action"] == replay.DELETE else _shown(after)))
    return rows


def _shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "all"
    return str(value) if value not in (None, "") else "all"


def summary_of(result: dict) -> dict:
    """The result of a finished run as the page shows it: labels, signed differences, examples."""
    per_scope = []
    for row in result.get("per_scope", []):
        per_scope.append({
            "channel": _label(Channel, row["channel"]), "purpose": _label(Purpose, row["purpose"]),
            "cells": [{"outcome": outcome, "word": OUTCOME_WORDS[outcome], "before": row["before"][outcome],
                       "after": row["after"][outcome], "difference": row["difference"][outcome]}
                      for outcome in replay.OUTCOMES],
            "changed": any(row["difference"].values()),
        })
    changes = [{**change, "channel": _label(Channel, change["channel"]), "purpose": _label(Purpose, change["purpose"]),
                "before_word": OUTCOME_WORDS[change["before"]], "after_word": OUTCOME_WORDS[change["after"]],
                "examples": [{**example, "url": reverse("admin:compliance_decision_change", args=[example["id"]])}
                             for example in change["examples"]]}
               for change in result.get("changes", [])]
    return {
        "per_scope": per_scope, "changes": changes,
        "replayed": result.get("replayed", 0), "changed": result.get("changed", 0),
        "not_replayable": [(replay.NOT_REPLAYABLE.get(why, why), count)
                           for why, count in sorted(result.get("not_replayable", {}).items())],
        "not_replayable_total": sum(result.get("not_replayable", {}).values()),
        "recorded_differs": result.get("recorded_differs", 0),
        "from_ledger": result.get("from_ledger", 0),
        "outside_scope": sum(row["count"] for row in result.get("outside_scope", [])),
        "arbitration": [{**row, "channel": _label(Channel, row["channel"]), "purpose": _label(Purpose, row["purpose"]),
                         "word": OUTCOME_WORDS.get(row["outcome"], row["outcome"])}
                        for row in result.get("arbitration", [])],
    }
