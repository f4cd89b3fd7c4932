"""The Kubernetes adapter: the one package that imports ``kubernetes``.

It watches the policy ConfigMap (for the webhook and the Reconciler), caches Sidecars for the
webhook's ambiguity checks, elects a leader on a Lease and reconciles the generated objects.
Everything it decides comes from ``webhook.core``; this package only moves objects.
"""
