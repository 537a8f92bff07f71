"""What a step's templates see: the lead's fields, the play's settings and its answers."""

from __future__ import annotations

from typing import Any

from gateway.models import Lead, Play
from gateway.playbooks import Playbook, TemplateContext, render


def template_context(playbook: Playbook, play: Play, lead: Lead) -> TemplateContext:
    fields: dict[str, Any] = {
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "email": lead.email,
        "phone": lead.phone,
        "state": lead.state,
        "postal_code": lead.postal_code,
        "additional_info": dict(lead.additional_info or {}),
    }
    try:
        settings = playbook.effective_settings(play.settings)
    except ValueError:
        settings = {**playbook.settings, **play.settings}  # checked when the play started
    return TemplateContext(lead=fields, settings=settings, answers=dict(play.answers or {}))


def fill(template: str, playbook: Playbook, play: Play, lead: Lead) -> str:
    return render(template, template_context(playbook, play, lead))
