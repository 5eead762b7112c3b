"""Device backends, one module per device kind (host.py, android.py, ios.py), each exposing
`create_backend(profile, options)`; see base.py for the interface."""
