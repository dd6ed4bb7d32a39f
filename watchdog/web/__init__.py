"""The dashboard: a page served by the daemon itself (no CDN, no build step).

``app`` builds the Flask application (pages, JSON API, images), ``auth`` keeps passwords,
sessions, CSRF tokens and the login rate limit; ``static/`` and ``templates/`` hold the
hand-written HTML, CSS and JavaScript. The server that runs it is ``watchdog.comms.http``.
"""
