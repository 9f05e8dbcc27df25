"""Admin pages as a browser sends them back, for tests that post a change form."""
from django import forms


def change_form_data(response) -> dict:
    """The POST data a browser would send back for an admin change page, as it was shown: every
    field of the form and its inlines with the value it shows, a field of several inputs (a
    number and a unit) as those inputs."""
    data = {}
    shown_forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        shown_forms.extend(formset.forms)
        data.update({f"{formset.management_form.prefix}-{name}": value
                     for name, value in formset.management_form.initial.items()})
    for form in shown_forms:
        for field in form:
            value = field.value()
            if value is None or value is False:
                continue
            if isinstance(field.field.widget, forms.MultiWidget):
                context = field.field.widget.get_context(field.html_name, value, {})
                for shown in context["widget"]["subwidgets"]:
                    sub_value = shown["value"][0] if isinstance(shown["value"], list) else shown["value"]
                    if sub_value not in (None, ""):
                        data[shown["name"]] = sub_value
                continue
            data[field.html_name] = value
    return data
