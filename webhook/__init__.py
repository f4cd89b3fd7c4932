"""egress-guard: an admission webhook and reconciler that enforce an Istio egress allow list."""
