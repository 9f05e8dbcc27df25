"""Browser steps of the consent capture, for the composed compliance walk and this app's own test."""
from django.utils import timezone

from compliance.models import Consent
from omni.tests.browser import expect

EVIDENCE = {"agreed_to": "Offers by email, about twice a month", "collected_at": "paper form at the Leeds store",
            "reference": "LDS-0042"}


def record_consent_step(page, base_url, contact, *, screenshot=None, channel="email", purpose="marketing",
                        lawful_basis="consent") -> Consent:
    """On the contact's admin page, already logged in as a Compliance user: record a granted
    consent with its evidence and lawful basis, and check the message and the consent row the
    page shows afterwards. Returns the contact's consent for that scope."""
    page.goto(f"{base_url}/admin/contacts/contact/{contact.pk}/change/")
    form = page.locator("#record-consent")
    expect(form).to_be_visible()
    form.locator("#id_consent-channel").select_option(channel)
    form.locator("#id_consent-purpose").select_option(purpose)
    form.locator("#id_consent-status").select_option("granted")
    form.locator("#id_consent-source").select_option("admin")
    form.locator("#id_consent-lawful_basis").select_option(lawful_basis)
    for name, value in EVIDENCE.items():
        form.locator(f"#id_consent-{name}").fill(value)
    form.locator("#id_consent-given_on").fill(f"{timezone.localdate():%Y-%m-%d}")
    if screenshot:
        screenshot("consent form filled in on the contact page")
    with page.expect_navigation():
        form.get_by_role("button", name="Record consent").click()
    consent = Consent.objects.select_related("last_change").get(contact=contact, channel=channel, purpose=purpose)
    expect(page.locator(".messagelist, [class*=message]").first).to_contain_text(
        f"Recorded: {consent.get_channel_display()} {consent.get_purpose_display().lower()} opted in")
    # The row of values (each row has a title line above it, "Gwen: email/marketing granted").
    row = (page.locator("#consents-group tr").filter(has_text=consent.get_channel_display())
           .filter(has_text=consent.get_purpose_display()).filter(has_text="Opted in")
           .filter(has_text=consent.get_lawful_basis_display()))
    expect(row).to_have_count(1)
    if screenshot:
        screenshot("consent recorded, shown among the contact's consents")
    return consent
