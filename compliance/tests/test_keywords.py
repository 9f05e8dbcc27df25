"""compliance/keywords.py: reading STOP, START and HELP in a text, over the lists it is given."""
import pytest

from compliance.keywords import FLAG, IGNORE, OPT_OUT_AND_FLAG, Reading, read_keyword
from compliance.models import KeywordList

LISTS = {
    "stop": ["STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ARRET"],
    "stop_all": ["STOPALL"],
    "start": ["START", "UNSTOP", "YES"],
    "help": ["HELP", "INFO"],
}
POLICIES = [OPT_OUT_AND_FLAG, FLAG, IGNORE]


@pytest.mark.parametrize("body", ["STOP", "STOP ", "Stop.", "  stop!!", "sToP\n", "«STOP»", "ＳＴＯＰ"])
@pytest.mark.parametrize("policy", POLICIES)
def test_a_message_that_is_only_stop_is_stop_in_any_case_spacing_or_punctuation(body, policy):
    assert read_keyword(body, LISTS, embedded_opt_out=policy) == Reading("stop", "stop")


@pytest.mark.parametrize("body, kind", [
    ("unsubscribe", "stop"), ("Cancel", "stop"), ("END.", "stop"), ("quit", "stop"), ("OptOut", "stop"),
    ("revoke", "stop"), ("STOPALL", "stop_all"), ("start", "start"), ("Unstop", "start"), ("YES!", "start"),
    ("help?", "help"), ("Info", "help"),
])
def test_each_word_of_each_list_is_its_kind(body, kind):
    assert read_keyword(body, LISTS).keyword == kind


@pytest.mark.parametrize("policy", POLICIES)
def test_non_stop_deals_never_matches_because_a_hyphenated_word_is_one_word(policy):
    assert read_keyword("non-stop deals?", LISTS, embedded_opt_out=policy) == Reading()


@pytest.mark.parametrize("body", ["don't stop-loss", "stop‑gap", "I can’t end’s"])
def test_hyphens_and_apostrophes_inside_a_word_keep_it_whole(body):
    assert read_keyword(body, LISTS, embedded_opt_out=OPT_OUT_AND_FLAG) == Reading()


def test_an_opt_out_word_inside_other_text_opts_out_and_flags_by_default():
    assert read_keyword("please stop texting me", LISTS) == Reading("stop", "stop", embedded=True, needs_agent=True)


def test_with_the_flag_policy_it_only_flags_for_an_agent():
    reading = read_keyword("please stop texting me", LISTS, embedded_opt_out=FLAG)

    assert reading == Reading("", "stop", embedded=True, needs_agent=True)
    assert not reading.opts_out


def test_with_the_ignore_policy_it_is_an_ordinary_message():
    assert read_keyword("please stop texting me", LISTS, embedded_opt_out=IGNORE) == Reading()


def test_stopall_inside_other_text_opts_out_of_every_channel():
    assert read_keyword("STOPALL now please", LISTS).keyword == "stop_all"


@pytest.mark.parametrize("body", ["yes I'd like more info", "can you help", "start time?"])
def test_start_and_help_words_inside_other_text_do_nothing(body):
    assert read_keyword(body, LISTS) == Reading()


@pytest.mark.parametrize("body", ["", "   ", "...", "stopp", "stops", "nonstop", "Hi there"])
def test_ordinary_messages_are_no_keyword(body):
    assert read_keyword(body, LISTS) == Reading()


def test_a_phrase_on_a_list_matches_as_a_whole_message_and_inside_text():
    lists = {**LISTS, "stop": [*LISTS["stop"], "Leave me alone"]}

    assert read_keyword("leave me ALONE!", lists).keyword == "stop"
    assert read_keyword("just leave me alone ok", lists) == Reading("stop", "leave me alone", True, True)


def test_a_word_on_two_lists_is_read_as_the_opt_out():
    assert read_keyword("end", {"stop": ["END"], "start": ["END"]}).keyword == "stop"


def test_the_lists_are_an_argument_so_another_language_is_another_list():
    assert read_keyword("Arrêt", {"stop": ["ARRÊT"]}).keyword == "stop"
    assert read_keyword("Arrêt", LISTS) == Reading()


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="embedded opt-out policy"):
        read_keyword("STOP", LISTS, embedded_opt_out="sometimes")


@pytest.mark.django_db
def test_the_migration_seeds_the_english_lists_and_replies(db):
    lists = KeywordList.objects.parser_lists()

    assert {"STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"} <= set(lists["stop"])
    assert "STOPALL" in lists["stop_all"]
    assert {"START", "UNSTOP", "YES"} <= set(lists["start"])
    assert {"HELP", "INFO"} <= set(lists["help"])
    start = KeywordList.objects.reply_for("start", ["en"])
    assert "HELP" in start and "STOP" in start and "frequency" in start


@pytest.mark.django_db
def test_stop_start_and_help_stay_keywords_even_if_staff_delete_every_list(db):
    KeywordList.objects.all().delete()

    lists = KeywordList.objects.parser_lists()

    assert [read_keyword(body, lists).keyword for body in ("STOP", "START", "HELP")] == ["stop", "start", "help"]


def test_a_wrong_embedded_opt_out_setting_stops_the_start_naming_it(settings):
    from compliance.checks import check_keyword_settings

    settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT = "sometimes"

    assert [error.id for error in check_keyword_settings(None)] == ["omni.compliance.E001"]
    settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT = FLAG
    assert check_keyword_settings(None) == []


@pytest.mark.django_db
def test_staff_add_a_language_in_the_admin_and_the_change_is_audited(admin_client):
    from omni.models import AuditEntry

    response = admin_client.post("/admin/compliance/keywordlist/add/", {
        "language": "es", "kind": "stop", "words": "BAJA\nPARAR", "reply": "Te has dado de baja."})

    assert response.status_code == 302
    assert read_keyword("parar", KeywordList.objects.parser_lists()).keyword == "stop"
    assert AuditEntry.objects.filter(action="keyword_list.created").count() == 1
