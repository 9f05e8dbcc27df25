"""How many SMS segments a text costs, shown to marketers on SMS variants and checked at publish."""
import re

import pytest
from django.core.exceptions import ValidationError

from templates.actions import publish_template
from templates.models import Template, TemplateVariant
from templates.sms_segments import MAX_SMS_SEGMENTS, count_segments


# --- counting ---------------------------------------------------------------------------------

def test_160_plain_characters_fit_one_segment_and_161_take_two():
    one = count_segments("a" * 160)
    two = count_segments("a" * 161)

    assert (one.encoding, one.units, one.segments, one.capacity) == ("GSM-7", 160, 1, 160)
    assert (two.encoding, two.units, two.segments, two.capacity) == ("GSM-7", 161, 2, 306)


def test_a_character_of_the_extension_table_counts_twice_and_stays_gsm_7():
    counted = count_segments("Only 5€ {today} [see ^ ~ | \\ site]")

    assert counted.encoding == "GSM-7"
    assert counted.units == len("Only 5€ {today} [see ^ ~ | \\ site]") + 9
    assert counted.ucs2_characters == ()


def test_the_whole_basic_set_is_gsm_7():
    basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿" \
            "abcdefghijklmnopqrstuvwxyzäöñüà"

    counted = count_segments(basic)

    assert (counted.encoding, counted.units) == ("GSM-7", 127)


def test_an_extension_character_is_never_split_between_two_parts():
    # 152 single units then "€" (2 units) would straddle the first part's 153: it moves whole.
    counted = count_segments("a" * 152 + "€" + "a" * 152)

    assert counted.units == 306
    assert counted.segments == 3


def test_a_curly_apostrophe_forces_ucs_2_and_is_named():
    counted = count_segments("It’s on sale")

    assert (counted.encoding, counted.units, counted.segments, counted.capacity) == ("UCS-2", 12, 1, 70)
    assert counted.ucs2_characters == ("’",)


def test_an_emoji_forces_ucs_2_and_counts_two_units():
    counted = count_segments("Sale 😀 now 😀 and ’")

    assert counted.encoding == "UCS-2"
    assert counted.units == len("Sale 😀 now 😀 and ’") + 2
    assert counted.ucs2_characters == ("😀", "’")


def test_ucs_2_over_70_units_takes_parts_of_67():
    assert count_segments("’" * 70).segments == 1
    assert count_segments("’" * 71).segments == 2
    assert count_segments("’" * 134).segments == 2
    assert count_segments("’" * 135).segments == 3


def test_the_line_shown_to_marketers():
    assert count_segments("a" * 97).describe() == "1 segment (GSM-7, 97 of 160)"
    assert count_segments("’😀" + "a" * 147).describe() == "3 segments (UCS-2 because of ’ and 😀, 150 of 201)"
    assert count_segments("’“”" + "a" * 10).describe() == "1 segment (UCS-2 because of ’, “ and ”, 13 of 70)"
    assert count_segments("").describe() == "0 segments (GSM-7, 0 of 160)"


def test_an_invisible_character_that_forces_ucs_2_is_named():
    counted = count_segments("20%\u00a0off\tnow")

    assert counted.ucs2_characters == ("\u00a0", "\t")
    assert counted.describe() == "1 segment (UCS-2 because of no-break space and U+0009, 11 of 70)"


# --- at publish -------------------------------------------------------------------------------

@pytest.fixture
def receipt(db):
    return Template.objects.create(key="receipt", name="Receipt", purpose="transactional")


def test_an_sms_whose_fixed_text_is_over_ten_segments_is_refused_naming_it(receipt):
    # given an SMS whose text, without its variables, is 11 GSM-7 parts long
    TemplateVariant.objects.create(template=receipt, channel="sms", locale="fr",
                                   text_body="{{ first_name }}" + "a" * (153 * MAX_SMS_SEGMENTS + 1))

    # when it is published, then it is refused
    with pytest.raises(ValidationError) as refused:
        publish_template(receipt)

    assert refused.value.messages == [
        "sms/fr text_body: at least 11 segments (GSM-7, 1531 of 1683); an SMS may be at most 10 segments "
        "long: shorten it."]
    assert not receipt.versions.exists()


def test_an_sms_of_ten_segments_and_long_texts_on_other_channels_are_published(receipt):
    TemplateVariant.objects.create(template=receipt, channel="sms", text_body="a" * 153 * MAX_SMS_SEGMENTS)
    TemplateVariant.objects.create(template=receipt, channel="whatsapp", text_body="’" * 2000)

    assert publish_template(receipt).number == 1


# --- in the admin -----------------------------------------------------------------------------

def test_the_template_page_shows_each_sms_variants_segments(receipt, admin_client):
    # given an SMS variant with variables, one without, and an email variant
    TemplateVariant.objects.create(template=receipt, channel="sms", locale="en",
                                   text_body="Hi {{ first_name }}, it’s shipped 😀")
    TemplateVariant.objects.create(template=receipt, channel="sms", locale="fr", text_body="a" * 97)
    TemplateVariant.objects.create(template=receipt, channel="email", locale="en", text_body="’" * 500)

    # when the marketer opens the template
    page = admin_client.get(f"/admin/message_templates/template/{receipt.pk}/change/").content.decode()

    # then each SMS variant says what it costs, at least where variables add to it
    assert "at least 1 segment (UCS-2 because of ’ and 😀, 20 of 70)" in page
    assert "1 segment (GSM-7, 97 of 160)" in page
    assert len(re.findall(r"\d+ segments? \(", page)) == 2


def test_the_variant_page_shows_its_segments(receipt, admin_client):
    variant = TemplateVariant.objects.create(template=receipt, channel="sms", text_body="a" * 161)

    page = admin_client.get(f"/admin/message_templates/templatevariant/{variant.pk}/change/").content.decode()

    assert "2 segments (GSM-7, 161 of 306)" in page
