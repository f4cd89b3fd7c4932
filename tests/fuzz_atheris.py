"""Coverage-guided fuzzing of the review handler with atheris (libFuzzer), ``make fuzz-atheris``.

Hypothesis (``tests/unit/test_fuzz_review_handler.py``) explores shapes we thought of; libFuzzer
mutates bytes guided by which branches of ``webhook`` they reach.  It starts from a corpus of
well-formed reviews of every governed kind (written to the corpus directory when it is empty) and
checks the same invariants on every input (``fuzz_reviews.Oracle``); a broken invariant raises,
and libFuzzer saves the input as ``crash-*`` for a regression test.

    python -m tests.fuzz_atheris CORPUS_DIR -max_total_time=300 -seed=1
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["webhook"]):
    from tests.unit.served_app import served_app

from werkzeug.test import Client

from tests.unit.fuzz_reviews import SEEDS, CapturedErrors, Oracle

MAX_BODY = 256 * 1024


def seed_corpus(directory: Path) -> None:
    """One well-formed review per governed kind and operation, if the corpus is empty."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        return
    for (group, kind), obj in SEEDS.items():
        for operation in ("CREATE", "UPDATE", "DELETE"):
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "u-1",
                    "kind": {"group": group, "version": "v1", "kind": kind},
                    "operation": operation,
                    "namespace": "test-app",
                    "name": "x",
                    "userInfo": {"username": "alice", "groups": ["devs"]},
                    "object": None if operation == "DELETE" else obj,
                    "oldObject": obj if operation != "CREATE" else None,
                },
            }
            name = f"{group or 'core'}-{kind}-{operation}.json"
            (directory / name).write_text(json.dumps(review))


def build_oracle() -> Oracle:
    """The app with the embedded policy, and the oracle that checks its answers."""
    app, policy = served_app(max_body=MAX_BODY)
    errors = CapturedErrors()
    logging.getLogger("webhook").addHandler(errors)
    logging.getLogger("webhook").setLevel(logging.ERROR)
    return Oracle(Client(app), policy, errors, max_body=MAX_BODY)


def main() -> None:
    corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if corpus:
        seed_corpus(Path(corpus[0]))
    oracle = build_oracle()

    def one_input(data: bytes) -> None:
        oracle.errors.records.clear()
        oracle.check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
