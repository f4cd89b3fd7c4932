"""The admission webhook adapter: flask routes that turn AdmissionReviews into core decisions.

The policy core decides; this package speaks HTTP to the API server (parsing, 4xx for bad
requests, responses, metrics, one JSON log line per decision) and runs under gunicorn over TLS.
"""
