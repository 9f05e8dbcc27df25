"""Rendering a template variant for one contact, strictly.

Jinja2's ImmutableSandboxedEnvironment with StrictUndefined: a missing variable, and any error
the template raises while it renders, is a RenderError (nothing is sent); templates edited in
the admin cannot reach Python internals, nor change the values they are given (a text part
that emptied a list would change what the HTML part, or the next contact sharing it, renders).
HTML bodies are autoescaped; text channels are not, so an apostrophe in a name stays an
apostrophe in an SMS.
"""
import re
from functools import lru_cache
from html import escape as html_escape
from html.parser import HTMLParser

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing


def _refuse_null(value):
    # A variable that is there but null (an event property or attribute sent as null) would
    # print "None" to the contact: it is as missing as an absent one.
    if value is None:
        raise UndefinedError("a variable printed here is null (give it a default: "
                             "{{ name | default('...', true) }})")
    return value


_text_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                                 finalize=_refuse_null)
_html_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True, finalize=_refuse_null)

TEXT_FIELDS = ("subject", "preheader", "text_body", "title")
# The variant's lines filling an approved content template's {{1}}, {{2}}... (WhatsApp, RCS), and
# the key of the rendered values, numbered as the provider wants them.
PROVIDER_VARIABLES = "provider_variables"
CONTENT_VARIABLES = "content_variables"

# The variable every email is rendered with: the contact's signed link to unsubscribe from, and
# manage, what they receive, naming the message (filled by the sender, channels.delivery).
UNSUBSCRIBE_URL = "unsubscribe_url"


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
    """Render every part of a variant (as stored in TemplateVersion.variants) with variables.
    A variant with an approved content template and provider variables gets their values as
    `content_variables`, {"1": ..., "2": ...}."""
    rendered = dict(variant)
    for name in TEXT_FIELDS + ("html_body",):
        source = variant.get(name) or ""
        if not source:
            rendered[name] = ""
            continue
        rendered[name] = _render(source, variables, html=name == "html_body", where=name, field=name)
    if variant.get("provider_template_id") and provider_variable_lines(variant.get("provider_variables")):
        rendered[CONTENT_VARIABLES] = _render_content_variables(variant["provider_variables"], variables)
    return rendered


def provider_variable_lines(source: str | None) -> list[str]:
    """The lines of a variant's provider variables, line 1 for {{1}}: blank lines at the end
    (a textarea's last newline) do not count, a blank line before a written one does (it is an
    empty {{N}})."""
    lines = (source or "").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _render_content_variables(source: str, variables: dict) -> dict[str, str]:
    # Twilio's ContentVariables: {"1": ..., "2": ...}, each line rendered as strictly as the body.
    values = {}
    for number, line in enumerate(provider_variable_lines(source), start=1):
        where = f"{PROVIDER_VARIABLES} {{{{{number}}}}}"
        value = _render(line, variables, html=False, where=where, field=PROVIDER_VARIABLES)
        # Twilio refuses a content template with an empty variable; spaces around a value are
        # a slip of the keyboard, not something the contact should read.
        value = value.strip()
        if not value:
            raise RenderError(f"{where} (line {number}) comes out empty for this contact; the approved template "
                              f"needs a value for it.", field=PROVIDER_VARIABLES)
        values[str(number)] = value
    return values


def _render(source: str, variables: dict, *, html: bool, where: str, field: str) -> str:
    """`source` rendered with `variables`; any error a RenderError on `field`, saying `where`."""
    try:
        return _compiled(source, html=html).render(variables)
    except UndefinedError as exc:
        raise RenderError(f"Missing variable in {where}: {exc.message}", field=field) from exc
    except TemplateError as exc:
        raise RenderError(f"Template error in {where}: {exc}", field=field) from exc
    except Exception as exc:
        # Templates are written in the admin: what they compute can raise at run time (a
        # division by zero, a number added to a text, a range the sandbox refuses), and
        # such a template cannot be sent as written any more than one missing a variable.
        raise RenderError(f"Error in {where}: {type(exc).__name__}: {exc}", field=field) from exc


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

    ImmutableSandboxedEnvironment(undefined=Recording, autoescape=False).from_string(source).render(variables)
    return found


# What stands for a variable or a block in unconditional_text(): not whitespace, so that the
# text on either side of it never reads as one line.
_BREAK = "\x00"


def unconditional_text(source: str) -> str:
    """The text `source` prints whatever its variables: its literal text outside comments,
    conditions and loops, each variable or block in it standing as a break. What a required
    line must be found in: one in a comment, an `{% if %}` or a loop may never be sent."""
    parts = []
    for node in _text_env.parse(source or "").body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    parts.append(child.data)
                elif isinstance(child, nodes.Const) and isinstance(child.value, str):
                    parts.append(child.value)
                else:
                    parts.append(_BREAK)
        else:
            parts.append(_BREAK)
    return "".join(parts)


def prints_unconditionally(source: str, name: str, *, html: bool = False) -> bool:
    """Whether `source` prints the variable `name` whatever its other variables: outside
    comments (an HTML one too), conditions and loops (as itself, or through filters such as `| e`)."""
    before = ""
    for node in (_html_env if html else _text_env).parse(source or "").body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    before += child.data
                while isinstance(child, nodes.Filter):
                    child = child.node
                if isinstance(child, nodes.Name) and child.name == name \
                        and not (html and before.rfind("<!--") > before.rfind("-->")):
                    return True
    return False


def fixed_text(source: str) -> tuple[str, bool]:
    """The text `source` prints whatever its variables (unconditional_text with its variables and
    blocks left out), and whether a variable or block may print more beside it."""
    text = unconditional_text(source)
    return text.replace(_BREAK, ""), _BREAK in text


def email_parts(rendered: dict) -> dict:
    """The text and HTML parts of a rendered email: a plain-text part made from the HTML where
    none was written (mail with an HTML part alone reads as spam to filters and shows nothing in
    text-only clients), and the preheader put in the HTML, hidden, as the preview inboxes show."""
    text_body, html_body = rendered.get("text_body") or "", rendered.get("html_body") or ""
    if html_body and not text_body.strip():
        text_body = html_to_text(html_body)
    preheader = rendered.get("preheader") or ""
    if html_body and preheader:
        hidden = (f'<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">'
                  f"{html_escape(preheader)}</div>")
        body_tag = re.search(r"<body\b[^>]*>", html_body, re.IGNORECASE)
        at = body_tag.end() if body_tag else 0
        html_body = html_body[:at] + hidden + html_body[at:]
    return {**rendered, "text_body": text_body, "html_body": html_body}


class _TextOfHtml(HTMLParser):
    BREAKS = {"br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "hr", "section", "header", "footer"}
    SKIPPED = {"head", "style", "script", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skipping, self.links = [], 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED:
            self.skipping = max(self.skipping - 1, 0)
        elif tag in self.BREAKS and tag not in ("br", "hr"):
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            # The link's address is what a text-only reader needs to follow it.
            if href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def html_to_text(source: str) -> str:
    """A readable plain-text version of an HTML email body: tags and styles dropped, blocks on
    their own lines, link addresses kept after their text."""
    parser = _TextOfHtml()
    parser.feed(source)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def validate_source(source: str, *, html: bool = False) -> None:
    """Raise RenderError if source is not valid template syntax (used when saving variants)."""
    env = _html_env if html else _text_env
    try:
        env.parse(source or "")
    except TemplateError as exc:
        raise RenderError(f"Template syntax error: {exc}") from exc
