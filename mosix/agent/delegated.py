"""Delegated authentication and authorization, as the kubelet and kube-rbac-proxy do it: the API server
says who a caller is (a TokenReview of their bearer token, or their client certificate checked against
the cluster's client CA) and what they may do (a SubjectAccessReview), so users need no pods/exec on
the privileged agent pod to reach their jobs' I/O. Answers are cached briefly, like the kubelet's.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

AUTHN_TTL = 120.0  # the kubelet's default for TokenReviews
ALLOWED_TTL = 300.0  # ... and for allowed SubjectAccessReviews
DENIED_TTL = 10.0  # shorter than the kubelet's 30 s: a new RoleBinding takes effect soon
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


@dataclasses.dataclass(frozen=True)
class Subject:
    """Who is calling, as the API server knows them."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclasses.dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


class _Cache:
    """Answers kept for a while, by key; what may go stale is bounded by the TTLs above."""

    def __init__(self) -> None:
        self._kept: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._kept.get(key)
            if found is None or found[0] < time.monotonic():
                self._kept.pop(key, None)
                return None
            return found[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        with self._lock:
            if len(self._kept) > 10000:  # many callers: start over rather than grow without bound
                self._kept.clear()
            self._kept[key] = (time.monotonic() + ttl, value)


class Reviewer:
    """TokenReviews and SubjectAccessReviews through the agent's own client (its ServiceAccount needs
    system:auth-delegator)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client as k8s

        self._k8s = k8s
        self._authn = k8s.AuthenticationV1Api(api_client)
        self._authz = k8s.AuthorizationV1Api(api_client)
        self._tokens = _Cache()
        self._access = _Cache()

    def authenticate(self, token: str) -> Subject | None:
        """The user a bearer token belongs to; None if the API server does not accept it."""
        found: tuple[Subject | None] | None = self._tokens.get(token)
        if found is not None:
            return found[0]
        review = self._authn.create_token_review(self._k8s.V1TokenReview(spec=self._k8s.V1TokenReviewSpec(token=token)))
        status = review.status
        subject = None
        if status is not None and status.authenticated and status.user is not None:
            u = status.user
            extra = tuple(sorted((k, tuple(v)) for k, v in (u.extra or {}).items()))
            subject = Subject(user=u.username or "", groups=tuple(u.groups or ()), uid=u.uid or "", extra=extra)
        elif status is not None and status.error:
            log.info("token refused by the API server: %s", status.error)
        self._tokens.put(token, (subject,), AUTHN_TTL)
        return subject

    def authorize(self, who: Subject, verb: str, *, group: str, resource: str, subresource: str, namespace: str,
                  name: str) -> Verdict:
        """Whether `who` may `verb` resource/subresource `name` in `namespace`, as RBAC (or whatever
        authorizes the API server) says."""
        key = (who, verb, group, resource, subresource, namespace, name)
        found: Verdict | None = self._access.get(key)
        if found is not None:
            return found
        k8s = self._k8s
        spec = k8s.V1SubjectAccessReviewSpec(
            user=who.user, groups=list(who.groups), uid=who.uid or None,
            extra={k: list(v) for k, v in who.extra} or None,
            resource_attributes=k8s.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                         subresource=subresource, namespace=namespace, name=name))
        status = self._authz.create_subject_access_review(k8s.V1SubjectAccessReview(spec=spec)).status
        verdict = Verdict(allowed=bool(status and status.allowed and not status.denied),
                          reason=(status.reason or status.evaluation_error or "") if status else "")
        self._access.put(key, verdict, ALLOWED_TTL if verdict.allowed else DENIED_TTL)
        return verdict


def client_ca(api_client: Any) -> str | None:
    """The cluster's client CA (PEM) from kube-system/extension-apiserver-authentication, which the API
    server publishes for delegated authentication; None if it has none or we may not read it."""
    from kubernetes import client as k8s

    namespace, name = AUTH_CONFIGMAP
    try:
        cm = k8s.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except k8s.ApiException as e:
        log.warning("cannot read %s/%s (%s): client certificates will not authenticate users", namespace, name,
                    e.reason)
        return None
    ca = (cm.data or {}).get("client-ca-file")
    return str(ca) if ca else None


def subject_of_certificate(peercert: dict[str, Any]) -> Subject | None:
    """The user of a client certificate the TLS layer verified against the client CA: the common name is
    the user, each organization a group (as the API server reads it)."""
    user, groups = "", []
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                user = str(v)
            elif k == "organizationName":
                groups.append(str(v))
    if not user:
        return None
    return Subject(user=user, groups=(*groups, "system:authenticated"))
