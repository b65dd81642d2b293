"""A job's files (model weights, model.json, exports, checkpoints): where their bytes are kept
(``storage``), their rows (``models``) and the rules for keeping and serving them (``service``).

May import: ``core``, ``spec``, ``jobs.models``.
"""
