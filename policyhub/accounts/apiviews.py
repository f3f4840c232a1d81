"""The base of every organisation-scoped API view: who acts, in which organisation, with what
permission, decided before the handler runs.

    class EndpointApi(OrgApiView):
        required = {"PUT": Permission.POLICY_EDIT, "DELETE": Permission.POLICY_EDIT}

Reads need `org.view` unless `required` says more; every write method must be listed, so a
new handler cannot forget its permission (checked when the class is defined). Outsiders get 404
(they learn nothing), members without the permission 403, and only then is the body read: a
refusal never depends on what was sent. Services check again, finer (a team editor's subtree).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rest_framework.generics import GenericAPIView
from rest_framework.request import Request

from policyhub.accounts.access import organization_for_request
from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.actors import Actor

READS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES = ("post", "put", "patch", "delete")


class OrgApiView(GenericAPIView[Any]):
    required: ClassVar[Mapping[str, Permission]] = {}
    # What the refusal says the actor may not do ("manage the fleet"), per method.
    doing: ClassVar[str] = "do this"
    organization: Organization
    actor: Actor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [m.upper() for m in WRITES if hasattr(cls, m) and m.upper() not in cls.required]
        if missing:
            raise TypeError(f"{cls.__name__} must name the permission of {', '.join(missing)}")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.organization, self.actor = organization_for_request(request, kwargs["slug"])
        method = "GET" if request.method in READS else str(request.method)
        needed = self.required.get(method, Permission.ORG_VIEW)
        authorize(self.actor, self.organization, needed, doing=self.doing)
