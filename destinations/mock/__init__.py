"""Mock destinations: real HTTP servers on loopback shaped like Meta Custom Audiences and the
Mailchimp Marketing API, in one process (``python -m destinations.mock``).

Modules: ``server`` (HTTP, routing, concurrency limit), ``meta_api`` and ``mailchimp_api``
(platform rules), ``control`` (inspection, seeding, faults), ``faults`` (fault actions),
``store`` (SQLite persistence), ``wire`` (request/response records), ``testing``
(``running_mock`` for tests and the demo). The HTTP API is described in
``docs/architecture.md`` ("Mock destination HTTP API").
"""
