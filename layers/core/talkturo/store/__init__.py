"""Data access: the only part of the platform that talks to DynamoDB (via pynamodb).

The key design of the single table is written down in docs/data-model.md.
"""
