"""What every organisation page shares: who is asking and what they may do, refusals, lists a
page at a time, and services' refusals shown beside the fields they name.

    @org_page(post=Permission.PUBLISH)
    def publish(request, page: OrgPage) -> HttpResponse: ...

A page view gets an `OrgPage`: the organisation (404 for anyone who may not see it, as the API),
the actor, and the permissions its templates use to offer only what the actor may do. A POST is
refused with 403 before its form is read unless the actor holds the view's `post` permission;
services still decide finely (a team editor's subtree) and their refusals come back as
`ApplicationError`, which `refusal` turns into a message per field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Generic, TypeVar

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode

from policyhub.accounts.access import organization_access_for_request
from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Access, Permission
from policyhub.actors import Actor
from policyhub.errors import ApplicationError, NotPermitted

M = TypeVar("M", bound=Model)
PAGE_SIZE = 50


class Can:
    """Permissions as template attributes: `{% if page.can.publish %}`."""

    def __init__(self, granted: Access) -> None:
        self._granted = granted

    def __getattr__(self, name: str) -> bool:
        value = name.replace("__", ".")
        try:
            return Permission(value) in self._granted.permissions
        except ValueError:
            raise AttributeError(name) from None

    def edit(self, node: str) -> bool:
        """Whether the actor may edit `node` (a team path; "" for the organisation's own)."""
        return Permission.POLICY_EDIT in self._granted.permissions and self._granted.covers(node)


@dataclass(frozen=True)
class OrgPage:
    """The organisation a page shows and who is looking."""

    org: Organization
    actor: Actor
    access: Access

    @property
    def can(self) -> Can:
        return Can(self.access)

    def require(self, permission: Permission) -> None:
        """403 unless the actor holds `permission`: what a page does not offer, a forged request
        cannot do either."""
        if permission not in self.access.permissions:
            raise PermissionDenied(f"{self.actor.label} may not do this in {self.org.slug}")


def org_page(
    *, post: Permission | None = None
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A page of one organisation (`slug` in the URL). `post`: the permission a POST needs;
    without it the page takes no POST at all."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
            page = OrgPage(*organization_access_for_request(request, slug))
            if request.method not in ("GET", "HEAD"):
                if post is None:
                    raise PermissionDenied("this page takes no changes")
                page.require(post)
            try:
                return view(request, page, **kwargs)
            except NotPermitted as refused:
                # A service's finer refusal (a team editor outside their subtree) is a 403 too.
                raise PermissionDenied(refused.message) from None

        return wrapped

    return decorate


@dataclass
class Refusal:
    """A service's refusal for a form: the message, and the findings by field path."""

    message: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.message)

    def onto(self, form: forms.Form) -> Refusal:
        """The findings on the form's fields as the form's own errors (shown as its validation
        errors are); the rest stay here, for above the form."""
        for name, texts in self.fields.items():
            for text in texts:
                form.add_error(name, text)
        return self


def refusal(
    refused: ApplicationError,
    fields: Iterable[str] = (),
    renamed: Mapping[str, str] | None = None,
) -> Refusal:
    """Split a refusal's findings between the form's own fields (shown in place) and the rest
    (shown above the form, with their paths). `renamed`: paths a service names
    (`teams.platform/ci.name`) that a form field (`name`) shows."""
    known = {**{name: name for name in fields}, **(renamed or {})}
    found = Refusal(refused.message)
    for issue in refused.issues:
        if issue.path in known:
            found.fields.setdefault(known[issue.path], []).append(issue.message)
        else:
            found.other.append(f"{issue.path}: {issue.message}" if issue.path else issue.message)
    return found


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a list in a fixed order, found by where the previous page ended (keyset
    pagination): the page costs the same at row 10 or row 1,000,000, with no COUNT."""

    items: Sequence[M]
    next_url: str | None
    first_url: str | None


def keyset_page(
    request: HttpRequest,
    queryset: QuerySet[M],
    *,
    key: str,
    descending: bool = False,
    size: int = PAGE_SIZE,
    cast: Callable[[str], Any] = str,
    param: str = "after",
) -> Page[M]:
    """The page after `?after=<key value>` of `queryset` ordered by the unique field `key`;
    the other query parameters (the list's filters) are kept in the links. `param` names the
    parameter instead of `after`, for a page that shows two lists."""
    after = request.GET.get(param)
    ordered = queryset.order_by(f"-{key}" if descending else key)
    if after:
        try:
            value = cast(after)
        except (TypeError, ValueError):
            value = None
        if value is not None:
            ordered = ordered.filter(**{f"{key}__{'lt' if descending else 'gt'}": value})
    items = list(ordered[: size + 1])
    kept = [(k, v) for k in request.GET if k != param for v in request.GET.getlist(k)]
    next_url = None
    if len(items) > size:
        items = items[:size]
        next_url = "?" + urlencode([*kept, (param, str(getattr(items[-1], key)))])
    first_url = ("?" + urlencode(kept)) if after else None
    return Page(items, next_url, first_url)


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"
