"""Which conversations a staff user may see and work on.

With OMNI_SUPPORT_AGENTS_SEE_ALL off, an agent (someone who may change conversations and is no
administrator) sees only the conversations of the queues they belong to and those assigned to
them, on every page and in every action: the inbox, the thread, bulk actions and the
conversation admin all read through `conversations_for`. Users who only view conversations
(compliance staff) and administrators always see all of them.
"""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from omni.lib.admin import is_administrator

from .models import Conversation, SupportQueue


def sees_every_conversation(user) -> bool:
    if settings.OMNI_SUPPORT_AGENTS_SEE_ALL or is_administrator(user):
        return True
    return not user.has_perm("channels.change_conversation")


def conversations_for(user, queryset: QuerySet | None = None) -> QuerySet:
    """`queryset` (every conversation by default) narrowed to what `user` may see."""
    queryset = Conversation.objects.all() if queryset is None else queryset
    if sees_every_conversation(user):
        return queryset
    their_queues = SupportQueue.agents.through.objects.filter(user_id=user.pk).values("supportqueue_id")
    return queryset.filter(Q(assignee_id=user.pk) | Q(queue_id__in=their_queues))


def assignable_agents() -> QuerySet:
    """Active staff who may work conversations (channels.change_conversation, directly, through a
    group, or as superusers): who a conversation may be assigned to, by username."""
    User = get_user_model()
    # Named, since django-axes' backend comes first and says nothing about permissions.
    holders = User.objects.with_perm("channels.change_conversation", backend="django.contrib.auth.backends.ModelBackend")
    return holders.filter(is_staff=True).order_by(User.USERNAME_FIELD)
