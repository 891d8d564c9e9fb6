"""The `hostile` scenario: every attack class of issue 10 against one live server while an honest
viewer/receiver pair measures itself (docs in loadtest/README.md)."""
