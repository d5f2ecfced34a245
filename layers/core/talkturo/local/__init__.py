"""The local platform: AWS emulator, resources from template.yaml, workers, dev account.

Only used on a developer's machine (needs the `local` extra); Lambda never imports it.
"""
