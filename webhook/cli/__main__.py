"""``python -m webhook.cli``: the same command as the ``egress-guard`` script."""

from __future__ import annotations

from webhook.cli import main

main()
