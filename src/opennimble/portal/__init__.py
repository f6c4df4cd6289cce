"""The studio portal: server-rendered pages at ``/portal/`` for people, beside the API.

Every action runs as an operation of the API (the same dispatcher, handlers, rules and store),
called for the signed-in user instead of a SigV4-signed request.
"""
