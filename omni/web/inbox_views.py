"""Support's pages inside the admin's frame: the inbox, one conversation's thread with its reply
and note forms, and starting a conversation from a contact.

Thin: reading is omni/web/inbox.py and omni/web/thread.py; every change is an action of
channels.conversations (P1), channels.replies (P3) or channels.assignment (P4), which validate,
write and audit. Each view checks the user's permission for what it does, and reads
conversations only through channels.support_access, so a conversation out of the user's reach
answers 404 wherever it is asked for.
"""
import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST
from unfold.widgets import (BUTTON_CLASSES, CHECKBOX_CLASSES, INPUT_CLASSES, SELECT_CLASSES, UnfoldAdminSelectWidget,
                            UnfoldAdminTextareaWidget)

from channels import conversations as conversation_actions
from channels import replies
from channels.assignment import set_available
from channels.models import (AgentStatus, BlockReason, Conversation, ConversationStatus, ConversationTag, Message,
                             MessageStatus)
from channels.support_access import assignable_agents, conversations_for
from contacts.models import Contact
from omni.choices import Channel

from . import inbox, thread, timeline
from .inbox import BLOCK, NOTE, READ_NOTES, REPLY, SAVED_REPLIES, VIEW, WORK
from .views import admin_page


# Unfold's own classes for the controls these pages draw by hand, so they look like its forms.
UI = {
    "input": " ".join(INPUT_CLASSES), "select": " ".join(SELECT_CLASSES), "button": " ".join(BUTTON_CLASSES),
    "secondary": " ".join(["border", "border-base-200", "bg-white", "cursor-pointer", "font-medium", "px-3", "py-2",
                           "rounded-default", "shadow-xs", "text-sm", "whitespace-nowrap", "dark:bg-base-900",
                           "dark:border-base-700"]),
    "checkbox": " ".join(CHECKBOX_CLASSES),
}


def support_page(request, template: str, title: str, **context):
    return admin_page(request, template, title, ui=UI, **context)


def require(user, permission: str) -> None:
    if not user.has_perm(permission):
        raise PermissionDenied


def agents_to_assign():
    """Active staff who may work conversations, for "assign to" (one query)."""
    return list(assignable_agents())


# --- forms ---------------------------------------------------------------------------------------

class TokenForm(forms.Form):
    # A fresh uuid each time the page is drawn: the same form sent twice (a double click, a
    # resent request) carries the same token, and channels.replies sends it once.
    form_token = forms.UUIDField(widget=forms.HiddenInput, error_messages={
        "required": "The form has lost its token: reload the page and send again.",
        "invalid": "The form has lost its token: reload the page and send again."})


class ReplyForm(TokenForm):
    body = forms.CharField(widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}), label="Reply", strip=True)


class TemplateReplyForm(TokenForm):
    template = forms.TypedChoiceField(coerce=int, label="Approved template", widget=UnfoldAdminSelectWidget)

    def __init__(self, *args, templates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = [(t.pk, str(t)) for t in templates]
        self.templates = {t.pk: t for t in templates}


class NoteForm(forms.Form):
    body = forms.CharField(widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}), label="Note", strip=True)


class FollowUpForm(forms.Form):
    follow_up_at = forms.DateTimeField(required=False, label="Follow up at",
                                       input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
                                       widget=forms.DateTimeInput(format="%Y-%m-%dT%H:%M", attrs={
                                           "type": "datetime-local", "class": " ".join(INPUT_CLASSES)}))


class BlockForm(forms.Form):
    reason = forms.ChoiceField(choices=BlockReason.choices, widget=UnfoldAdminSelectWidget)
    note = forms.CharField(required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}))


class StartForm(TokenForm):
    channel = forms.ChoiceField(choices=[(c, label) for c, label in Channel.choices
                                         if c in replies.CONVERSATION_CHANNELS],
                                widget=UnfoldAdminSelectWidget)
    body = forms.CharField(widget=UnfoldAdminTextareaWidget(attrs={"rows": 4}), label="Message", strip=True)


def fresh_token() -> dict:
    return {"form_token": uuid.uuid4()}


# --- the inbox -----------------------------------------------------------------------------------

def inbox_page(request):
    require(request.user, VIEW)
    filters = inbox.Filters.from_query(request.GET)
    page = inbox.read_page(request.user, filters, request.GET.get("cursor"))
    counts = inbox.tab_counts(request.user, filters)
    tabs = [{"title": f"{title} ({counts[name]:,})", "link": "?" + urlencode(filters.as_query(tab=name)),
             "active": name == filters.tab, "has_permission": True} for name, title in inbox.TABS]
    may_work = request.user.has_perm(WORK)
    status = AgentStatus.objects.filter(agent=request.user).values_list("available", flat=True).first()
    return support_page(
        request, "omni_web/inbox.html", "Inbox",
        filters=filters, page=page, tabs_list=tabs, counts=counts, **inbox.filter_options(),
        channels=Channel.choices, statuses=inbox.STATUS_CHOICES,
        next_query=urlencode({**filters.as_query(), "cursor": page.next_cursor}) if page.next_cursor else "",
        first_query=urlencode(filters.as_query()) if request.GET.get("cursor") else None,
        here=request.get_full_path(), may_work=may_work, agents=agents_to_assign() if may_work else [],
        available=bool(status), may_set_availability=may_work,
    )


inbox_page = admin.site.admin_view(inbox_page)


def back_to(request, fallback: str) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = fallback
    return HttpResponseRedirect(target or fallback)


@require_POST
def inbox_bulk(request):
    require(request.user, WORK)
    ids = [int(value) for value in request.POST.getlist("conversation") if value.isdigit()]
    # Only what the user may see: an id out of their reach is left out, never acted on.
    chosen = list(conversations_for(request.user).filter(pk__in=ids).values_list("pk", flat=True))
    action = request.POST.get("action", "")
    fallback = reverse("omni-web:inbox")
    if not chosen:
        messages.warning(request, "Choose at least one conversation first.")
        return back_to(request, fallback)
    try:
        return _bulk(request, action, chosen, fallback)
    except conversation_actions.ConversationError as error:
        messages.error(request, str(error))
        return back_to(request, fallback)


def _bulk(request, action, chosen, fallback):
    if action == "assign_me":
        done = conversation_actions.assign(chosen, request.user, actor=request.user)
        messages.success(request, f"{done} conversation(s) assigned to you.")
    elif action == "assign":
        agent = next((a for a in agents_to_assign() if str(a.pk) == request.POST.get("agent")), None)
        if agent is None:
            messages.error(request, "Choose the agent to assign them to.")
            return back_to(request, fallback)
        done = conversation_actions.assign(chosen, agent, actor=request.user)
        messages.success(request, f"{done} conversation(s) assigned to {agent.get_username()}.")
    elif action == "unassign":
        done = conversation_actions.assign(chosen, None, actor=request.user)
        messages.success(request, f"{done} conversation(s) unassigned.")
    elif action == "tag":
        name = " ".join(request.POST.get("tag", "").split())
        done = conversation_actions.tag(chosen, [name], actor=request.user)
        messages.success(request, f"Tagged {done} conversation(s) “{name}”.")
    elif action == "close":
        done = conversation_actions.close(chosen, actor=request.user)
        messages.success(request, f"{done} conversation(s) closed.")
    else:
        messages.error(request, "Choose what to do with them.")
    return back_to(request, fallback)


inbox_bulk = admin.site.admin_view(inbox_bulk)


@require_POST
def availability(request):
    require(request.user, WORK)
    available = request.POST.get("available") == "1"
    set_available(request.user, available, actor=request.user)
    messages.success(request, "You take new conversations now." if available else "You take no new conversations.")
    return back_to(request, reverse("omni-web:inbox"))


availability = admin.site.admin_view(availability)


# --- the thread ----------------------------------------------------------------------------------

def conversation_for(request, conversation_id: int) -> Conversation:
    return get_object_or_404(conversations_for(request.user).select_related("contact", "assignee", "queue"),
                             pk=conversation_id)


def render_thread(request, conversation, *, status=200, reply_form=None, template_form=None, note_form=None,
                  follow_up_form=None, block_form=None):
    user = request.user
    contact = conversation.contact
    may_reply = user.has_perm(REPLY) and conversation.status != ConversationStatus.CLOSED
    options = replies.reply_form_options(conversation) if may_reply else None
    saved_replies, saved_reply_error = [], ""
    if may_reply and user.has_perm(SAVED_REPLIES):
        saved_replies = options.saved_replies
        picked = request.GET.get("saved_reply", "")
        if reply_form is None and picked.isdigit():
            saved = next((s for s in saved_replies if s.pk == int(picked)), None)
            try:
                text = replies.render_saved_reply(saved, contact) if saved else ""
            except replies.MissingVariables as missing:
                saved_reply_error = str(missing)
            else:
                reply_form = ReplyForm(initial={**fresh_token(), "body": text})
    entries = thread.read(conversation, with_notes=user.has_perm(READ_NOTES))
    summary = timeline.summary(contact, user)
    return support_page(
        request, "omni_web/thread.html", f"{conversation.get_channel_display()} conversation with {contact}",
        status=status, conversation=conversation, contact=contact, thread=entries,
        breaches=inbox.breaches(conversation, timezone.now()), summary=summary,
        reach_rows=timeline.reach_rows(summary), purposes=timeline.PURPOSE_CHOICES,
        tags=list(conversation.tags.all()), all_tags=list(ConversationTag.objects.values_list("name", flat=True)),
        may_work=user.has_perm(WORK), may_reply=may_reply, may_note=user.has_perm(NOTE),
        may_block=user.has_perm(BLOCK), options=options, saved_replies=saved_replies,
        saved_reply_error=saved_reply_error,
        reply_form=reply_form or ReplyForm(initial=fresh_token()),
        template_form=template_form or TemplateReplyForm(initial=fresh_token(),
                                                         templates=options.templates if options else ()),
        note_form=note_form or NoteForm(), follow_up_form=follow_up_form or FollowUpForm(
            initial={"follow_up_at": conversation.follow_up_at}),
        block_form=block_form or BlockForm(), resend_token=uuid.uuid4(),
        statuses=[(ConversationStatus.OPEN, "Open"), (ConversationStatus.WAITING, "Waiting on customer")],
        timeline_url=reverse("omni-web:timeline", args=[contact.pk]),
    )


def thread_page(request, conversation_id: int):
    require(request.user, VIEW)
    return render_thread(request, conversation_for(request, conversation_id))


thread_page = admin.site.admin_view(thread_page)


def _reply(request, conversation):
    form = ReplyForm(request.POST)
    if not form.is_valid():
        return render_thread(request, conversation, status=400, reply_form=form)
    try:
        message = replies.reply(conversation, agent=request.user, body=form.cleaned_data["body"],
                                form_token=str(form.cleaned_data["form_token"]))
    except replies.ReplyError as error:
        form.add_error(None, str(error))
        return render_thread(request, conversation, status=400, reply_form=form)
    return _said(request, message)


def _reply_with_template(request, conversation):
    options = replies.reply_form_options(conversation)
    form = TemplateReplyForm(request.POST, templates=options.templates)
    if not form.is_valid():
        return render_thread(request, conversation, status=400, template_form=form)
    try:
        message = replies.reply_with_template(conversation, agent=request.user,
                                              template=form.templates[form.cleaned_data["template"]],
                                              form_token=str(form.cleaned_data["form_token"]))
    except replies.ReplyError as error:
        form.add_error(None, str(error))
        return render_thread(request, conversation, status=400, template_form=form)
    return _said(request, message)


def _resend(request, conversation):
    form = TokenForm(request.POST)
    failed = Message.objects.filter(conversation=conversation, pk=request.POST.get("message") or 0).first() \
        if (request.POST.get("message") or "").isdigit() else None
    if failed is None or not form.is_valid():
        messages.error(request, "That reply is not in this conversation.")
        return None
    try:
        message = replies.resend(failed, agent=request.user, form_token=str(form.cleaned_data["form_token"]))
    except replies.ReplyError as error:
        messages.error(request, str(error))
        return None
    return _said(request, message)


def _said(request, message):
    """Where a reply lands: the thread at the reply, saying whether it went."""
    if message.status in thread.NOT_SENT or message.status == MessageStatus.FAILED:
        messages.warning(request, f"Not sent: {replies.refusal_in_words(message)}")
    elif message.status == MessageStatus.DEFERRED:
        messages.warning(request, f"Held for later: {replies.refusal_in_words(message)}")
    else:
        messages.success(request, "Reply sent.")
    return HttpResponseRedirect(reverse("omni-web:thread", args=[message.conversation_id]) + f"#message-{message.pk}")


def _note(request, conversation):
    form = NoteForm(request.POST)
    if not form.is_valid():
        return render_thread(request, conversation, status=400, note_form=form)
    try:
        conversation_actions.add_note(conversation, form.cleaned_data["body"], author=request.user)
    except conversation_actions.ConversationError as error:
        form.add_error("body", str(error))
        return render_thread(request, conversation, status=400, note_form=form)
    messages.success(request, "Note added (never sent).")


def _assign_me(request, conversation):
    if conversation_actions.assign([conversation.pk], request.user, actor=request.user):
        messages.success(request, "Assigned to you.")
    else:
        messages.warning(request, "Not assigned: it is closed, or yours already.")


def _unassign(request, conversation):
    conversation_actions.assign([conversation.pk], None, actor=request.user)
    messages.success(request, "Unassigned.")


def _status(request, conversation):
    wanted = request.POST.get("status")
    moves = {ConversationStatus.WAITING: (conversation_actions.set_waiting, "Waiting on the customer."),
             ConversationStatus.OPEN: (conversation_actions.set_open, "Open.")}
    if wanted not in moves:
        messages.error(request, "Choose open or waiting.")
    elif wanted == conversation.status:
        messages.info(request, f"It is {conversation.get_status_display().lower()} already.")
    else:
        move, said = moves[wanted]
        if move(conversation, actor=request.user):
            messages.success(request, said)
        else:
            messages.warning(request, "Not changed: someone closed or moved it meanwhile.")


def _tag(request, conversation):
    remove = request.POST.get("remove") == "1"
    name = request.POST.get("tag", "")
    try:
        conversation_actions.tag([conversation.pk], [name], actor=request.user, remove=remove)
    except conversation_actions.ConversationError as error:
        messages.error(request, str(error))
        return None
    messages.success(request, f"Tag “{' '.join(name.split())}” {'removed' if remove else 'added'}.")


def _follow_up(request, conversation):
    form = FollowUpForm(request.POST)
    if not form.is_valid():
        return render_thread(request, conversation, status=400, follow_up_form=form)
    at = form.cleaned_data["follow_up_at"]
    conversation_actions.set_follow_up(conversation, at, actor=request.user)
    messages.success(request, "Follow-up set." if at else "Follow-up cleared.")


def _close(request, conversation):
    if conversation_actions.close([conversation.pk], actor=request.user):
        messages.success(request, "Conversation closed.")
    else:
        messages.warning(request, "It was closed already.")


def _block(request, conversation):
    form = BlockForm(request.POST)
    if not form.is_valid():
        return render_thread(request, conversation, status=400, block_form=form)
    last = conversation.inbound_messages.order_by("-received_at", "-pk").values_list("from_address", flat=True).first()
    address = last or conversation.contact.address_for(conversation.channel)
    try:
        conversation_actions.block_sender(conversation.channel, address, reason=form.cleaned_data["reason"],
                                          note=form.cleaned_data["note"], actor=request.user)
    except conversation_actions.ConversationError as error:
        form.add_error(None, str(error))
        return render_thread(request, conversation, status=400, block_form=form)
    messages.success(request, f"{address} is blocked on {conversation.get_channel_display()}: their messages "
                              "are kept and answered by nothing.")


# name: (permission, handler). A handler returns a response of its own (a form with errors, a
# redirect to a new reply) or None to come back to the thread.
THREAD_ACTIONS = {
    "reply": (REPLY, _reply),
    "reply_template": (REPLY, _reply_with_template),
    "resend": (REPLY, _resend),
    "note": (NOTE, _note),
    "assign_me": (WORK, _assign_me),
    "unassign": (WORK, _unassign),
    "status": (WORK, _status),
    "tag": (WORK, _tag),
    "follow_up": (WORK, _follow_up),
    "close": (WORK, _close),
    "block": (BLOCK, _block),
}


@require_POST
def thread_action(request, conversation_id: int, action: str):
    if action not in THREAD_ACTIONS:
        raise Http404("No such action on a conversation.")
    permission, handler = THREAD_ACTIONS[action]
    require(request.user, VIEW)
    require(request.user, permission)
    conversation = conversation_for(request, conversation_id)
    response = handler(request, conversation)
    return response or HttpResponseRedirect(reverse("omni-web:thread", args=[conversation.pk]))


thread_action = admin.site.admin_view(thread_action)


# --- starting a conversation ---------------------------------------------------------------------

def start_conversation(request, contact_id: int):
    require(request.user, "contacts.view_contact")
    require(request.user, REPLY)
    contact = get_object_or_404(Contact, pk=contact_id, erased_at__isnull=True)
    form = StartForm(request.POST or None, initial={**fresh_token(), "channel": Channel.SMS})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                conversation, message = replies.start_conversation(
                    contact, form.cleaned_data["channel"], agent=request.user, body=form.cleaned_data["body"],
                    form_token=str(form.cleaned_data["form_token"]))
            except replies.ReplyError as error:
                form.add_error(None, str(error))
            else:
                return _said(request, message)
        status = 400
    return support_page(request, "omni_web/start_conversation.html", f"Write to {contact}", status=status,
                      contact=contact, form=form)


start_conversation = admin.site.admin_view(start_conversation)
