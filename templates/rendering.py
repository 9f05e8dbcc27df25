"""Rendering a template variant for one contact, strictly.

Jinja2's SandboxedEnvironment with StrictUndefined: a missing variable, and any error the
template raises while it renders, is a RenderError (nothing is sent), and templates edited in the admin cannot reach Python internals. HTML bodies are
autoescaped; text channels are not, so an apostrophe in a name stays an apostrophe in an SMS.
"""
from functools import lru_cache

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

_text_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)

TEXT_FIELDS = ("subject", "preheader", "text_body", "title")


class RenderError(Exception):
    """A template could not be rendered; `field` names the part that failed."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def contact_variables(contact) -> dict:
    """What every template can use about its contact, beside the message's own variables."""
    return {
        "contact": {
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "email": contact.email,
            "phone": contact.phone,
            "locale": contact.locale,
            "external_id": contact.external_id or "",
            "attributes": contact.attributes or {},
        },
        "first_name": contact.first_name,
        "last_name": contact.last_name,
    }


def render_variant(variant: dict, variables: dict) -> dict:
    """Render every part of a variant (as stored in TemplateVersion.variants) with variables."""
    rendered = dict(variant)
    for name in TEXT_FIELDS + ("html_body",):
        source = variant.get(name) or ""
        if not source:
            rendered[name] = ""
            continue
        try:
            rendered[name] = _compiled(source, html=name == "html_body").render(variables)
        except UndefinedError as exc:
            raise RenderError(f"Missing variable in {name}: {exc.message}", field=name) from exc
        except TemplateError as exc:
            raise RenderError(f"Template error in {name}: {exc}", field=name) from exc
        except Exception as exc:
            # Templates are written in the admin: what they compute can raise at run time (a
            # division by zero, a number added to a text, a range the sandbox refuses), and
            # such a template cannot be sent as written any more than one missing a variable.
            raise RenderError(f"Error in {name}: {type(exc).__name__}: {exc}", field=name) from exc
    return rendered


@lru_cache(maxsize=512)
def _compiled(source: str, *, html: bool):
    # Compiling is most of the cost of a render; a campaign renders the same few sources
    # thousands of times.
    return (_html_env if html else _text_env).from_string(source)


def undefined_names(source: str, variables: dict) -> list[str]:
    """Every variable `source` uses that `variables` lacks, by its dotted name
    ("contact.attributes.plan"), in order of first use: what a strict render would stop at, all
    at once, so a person can be told each one before anything is sent. Names given a default
    (`{{ nickname | default("there") }}`) are not missing."""
    paths = {}

    def walk(value, path):
        if isinstance(value, dict):
            paths[id(value)] = path
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))

    walk(variables, "")
    found = []

    class Recording(ChainableUndefined):
        # A missing value is named when the template uses it (prints, loops over or tests it),
        # not when a filter such as `default` only looks at it.
        def _record(self):
            name = self._undefined_name or ""
            parent = self._undefined_obj
            if parent is not missing and id(parent) in paths and paths[id(parent)]:
                name = f"{paths[id(parent)]}.{name}"
            if name and name not in found:
                found.append(name)

        def __str__(self):
            self._record()
            return ""

        def __iter__(self):
            self._record()
            return iter(())

        def __bool__(self):
            self._record()
            return False

        def __len__(self):
            self._record()
            return 0

    SandboxedEnvironment(undefined=Recording, autoescape=False).from_string(source).render(variables)
    return found


def validate_source(source: str, *, html: bool = False) -> None:
    """Raise RenderError if source is not valid template syntax (used when saving variants)."""
    env = _html_env if html else _text_env
    try:
        env.parse(source or "")
    except TemplateError as exc:
        raise RenderError(f"Template syntax error: {exc}") from exc
