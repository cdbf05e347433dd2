"""The web dashboard: server-rendered pages at ``/dashboard/`` of ``taskloom serve`` (or
alone, ``taskloom dashboard --store URL``) to see instances, their histories and why they
are not finished, and to act on them with the HTTP API's keys and roles.

See ``docs/dashboard.md``. :func:`taskloom.dashboard.app.mount` adds it to an ASGI app;
:func:`taskloom.dashboard.app.standalone_app` serves it alone.
"""
