"""Finding a contact from the header's search box: one term read every way it can be (a phone
number in any notation, an email address in any case, an external id, the start of a name),
in one query over indexed columns. Erased contacts never match."""
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.db.models.functions import Lower

from contacts.models import Contact
from contacts.phones import normalize_phone

MAX_RESULTS = 50


@dataclass
class SearchResult:
    term: str
    readings: list[str] = field(default_factory=list)  # what the term was tried as, in words
    contacts: list[Contact] = field(default_factory=list)
    more: bool = False  # more than MAX_RESULTS matched


def _name_filter(term: str) -> Q | None:
    words = term.lower().split()
    if not words or any(c in term for c in "@+") or term.isdigit():
        return None
    if len(words) == 1:
        return Q(first_lower__startswith=words[0]) | Q(last_lower__startswith=words[0])
    # "Alice Ar": the first name whole, the last name from its start.
    return Q(first_lower=words[0], last_lower__startswith=" ".join(words[1:]))


def find_contacts(term: str, default_country: str | None = None) -> SearchResult:
    term = " ".join((term or "").split())
    result = SearchResult(term=term)
    if not term:
        return result
    country = settings.OMNI_DEFAULT_COUNTRY if default_country is None else default_country
    query = Q(external_id=term)
    result.readings.append(f"external id {term}")
    try:
        phone = normalize_phone(term, country or None)
    except ValidationError:
        phone = None
    if phone:
        query |= Q(phone=phone)
        result.readings.insert(0, f"read as {phone}")
    if "@" in term:
        # Addresses are stored in lower case (Contact.clean); one kept as typed is found too.
        query |= Q(email__in={term, term.lower()})
        result.readings.insert(0, f"email {term.lower()}")
    names = _name_filter(term)
    if names is not None:
        query |= names
        result.readings.append(f"a name starting with “{term}”")
    found = list(
        Contact.objects.annotate(first_lower=Lower("first_name"), last_lower=Lower("last_name"))
        .filter(query, erased_at__isnull=True)
        .order_by("last_lower", "first_lower", "pk")[: MAX_RESULTS + 1]
    )
    result.contacts, result.more = found[:MAX_RESULTS], len(found) > MAX_RESULTS
    return result
