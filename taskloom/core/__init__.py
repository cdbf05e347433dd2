"""The pure replay core: actions, the executor and history rewriting. No I/O here."""
