"""Layer 0, the foundation every other layer may use: image I/O (``images``), seeded randomness (``seeding``) and
typed YAML configs (``config``). Nothing here imports another part of spire_ir."""
