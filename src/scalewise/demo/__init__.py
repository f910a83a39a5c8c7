"""The bundled demo: an instrumented example service and a bounded load against it."""
