"""The pure policy core: policy, host matching, decisions, desired state. No I/O."""
