"""``egress-guard check``: decide manifests offline exactly as the admission webhook would."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import click
import yaml

from webhook.cli.common import (
    AT_OPTION,
    EXIT_DENIED,
    EXIT_OK,
    POLICY_OPTION,
    fail,
    instant,
    load_policy,
    main,
    read,
)
from webhook.core.admitting import admit
from webhook.core.checks.listed_view import listed_view
from webhook.core.errors import ReviewError
from webhook.core.reviews import OPERATIONS, Operation, Review, parse_review, review_of_manifest

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(text: str, source: str) -> Iterator[Mapping[str, Any]]:
    """The objects in a file: YAML documents, ``List`` items, or one AdmissionReview JSON."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        fail(f"{source} is not valid YAML/JSON: {exc}")
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            fail(f"{source}: expected Kubernetes objects, found a {type(doc).__name__}")
        if doc.get("kind") == "List" or (
            str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
        ):
            for item in doc.get("items") or ():
                if not isinstance(item, Mapping):
                    fail(f"{source}: a List item is not an object")
                yield item
        else:
            yield doc


def _reviews(
    paths: Sequence[str], operation: Operation, namespace: str | None
) -> list[tuple[Review, str]]:
    reviews: list[tuple[Review, str]] = []
    for path in paths:
        for doc in _documents(read(path), path):
            if doc.get("kind") == "AdmissionReview":
                try:
                    reviews.append((parse_review(doc), path))
                except ReviewError as exc:
                    fail(f"{path}: {exc}")
            else:
                reviews.append(
                    (review_of_manifest(doc, operation=operation, namespace=namespace), path)
                )
    return reviews


@main.command()
@POLICY_OPTION
@AT_OPTION
@click.option("--namespace", "-n", help="Namespace for objects that do not name one.")
@click.option(
    "--operation",
    default="CREATE",
    show_default=True,
    type=click.Choice(sorted(OPERATIONS - {"CONNECT"}), case_sensitive=False),
)
@click.argument("manifests", nargs=-1, required=True)
def check(
    policy_path: str | None,
    at: str | None,
    namespace: str | None,
    operation: str,
    manifests: tuple[str, ...],
) -> None:
    """Decide manifests (YAML, '-' for stdin, or AdmissionReview JSON) as the webhook would.

    One line per object, ALLOW|DENY|AUDIT KIND NS/NAME: reason.  Exit 0 when everything is
    admitted, 1 when anything is denied, 2 on bad input.
    """
    # the policy in force at that instant: live exceptions grant, ended ones do not
    policy = load_policy(policy_path).at(instant(at))
    reviews = _reviews(manifests, cast(Operation, operation.upper()), namespace)
    view = listed_view(review for review, _ in reviews)
    denied = False
    for review, _ in reviews:
        decision = admit(review, policy, view=view)
        where = f"{review.namespace}/{review.name}" if review.namespace else review.name
        reason = decision.reason or "allowed"
        click.echo(f"{decision.verdict.upper()} {review.kind} {where}: {reason}")
        for warning in decision.warnings if not decision.audited else ():
            click.echo(f"  warning: {warning}")
        denied = denied or not decision.allowed
    sys.exit(EXIT_DENIED if denied else EXIT_OK)
