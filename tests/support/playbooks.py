"""The "Hello" playbook the API and console tests publish: one question, YES qualifies."""

from __future__ import annotations

PLAYBOOK_YAML = """\
name: Hello
activities:
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes, yep]
        outcome: qualified
"""
