"""Live events over Server-Sent Events: events written with the changes they describe
(``service``), one reader of new events per API process (``hub``), and the stream routes.

May import: ``core``, ``auth``, ``jobs``.
"""
