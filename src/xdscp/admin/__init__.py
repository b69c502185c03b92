"""The admin HTTP server: health, readiness and debug views."""
