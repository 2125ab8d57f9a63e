"""The public status feed, for the exchange's users: what a status page publishes (components, incidents and their
updates, in the shape statuspage-style pages use) and the same updates as an Atom feed.

Written in the words the exchange would post, from the runbook's own journal: trading halted, the recovery-protection
window (cancel, post-only and add-margin only, until HH:MM UTC and in the display zone), trading reopened. Nothing
internal leaves: no host, site, replica, cloud, epoch or reason text (a reason names sites); an incident's public id
is a digest of ours, so support can match the two and nobody else learns anything from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from xml.sax.saxutils import escape

from orchestrator.drivers.status import EngineLine
from orchestrator.store.records import Incident, JournalEntry

# the component status a trading phase shows as (the vocabulary status pages use)
COMPONENT_STATUS = {"open": "operational", "protection": "partial_outage", "halted": "major_outage"}
INDICATOR = {"operational": "none", "partial_outage": "major", "major_outage": "critical"}
DESCRIPTION = {"none": "All systems operational", "major": "Trading is limited", "critical": "Trading is halted"}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hhmm(at: float, display: tzinfo) -> str:
    """`03:20 UTC (11:20 UTC+8)`: the time users plan by, in UTC and the exchange's own zone."""
    moment = datetime.fromtimestamp(at, UTC)
    local = moment.astimezone(display)
    offset = local.utcoffset()
    if not offset:
        return f"{moment:%H:%M} UTC"
    hours, seconds = divmod(int(offset.total_seconds()), 3600)
    zone = f"UTC{hours:+d}" + (f":{abs(seconds) // 60:02d}" if seconds else "")
    return f"{moment:%H:%M} UTC ({local:%H:%M} {zone})"


def public_id(incident_id: str) -> str:
    return hashlib.sha256(incident_id.encode()).hexdigest()[:12]


def _updates(incident: Incident, journal: Sequence[JournalEntry], display: tzinfo) -> list[dict[str, Any]]:
    """The posts an exchange makes as the runbook moves, oldest first."""
    market = incident.engine
    posts: list[dict[str, Any]] = []
    for entry in journal:
        if entry.state.value != "done":
            continue
        if entry.step == "halt":
            posts.append({"status": "identified", "at": entry.at,
                          "body": f"Trading halted on {market}. Open orders are safe; we are moving the market to "
                                  "another data centre and will post again when trading resumes."})
        elif entry.step == "open_protection":
            until = entry.detail.get("until")
            when = f" until {_hhmm(float(until), display)}" if isinstance(until, int | float) else ""
            posts.append({"status": "monitoring", "at": entry.at,
                          "body": f"Recovery-protection window on {market}{when}: you can cancel orders, place "
                                  "post-only orders and add margin; matching is paused and no trade can happen."})
        elif entry.step == "reopen":
            posts.append({"status": "resolved", "at": entry.at, "body": f"Trading reopened on {market}."})
    if incident.status.value == "needs_human" and not any(p["status"] == "resolved" for p in posts):
        posts.append({"status": "identified", "at": incident.updated_at,
                      "body": f"Trading on {market} stays halted while our engineers check it by hand. "
                              "We will post again before trading resumes."})
    return posts


def public_status(engines: Sequence[EngineLine], incidents: Sequence[Incident],
                  journals: Mapping[str, Sequence[JournalEntry]], display: tzinfo, now: float,
                  name: str = "Exchange status") -> dict[str, Any]:
    components = [{"name": e.name, "status": COMPONENT_STATUS.get(e.phase, "major_outage"),
                   "updated_at": _iso(e.phase_since or now)} for e in engines]  # never changed: as of now
    worst = max((INDICATOR[c["status"]] for c in components), default="none",
                key=["none", "major", "critical"].index)
    published = []
    for incident in incidents:
        posts = _updates(incident, journals.get(incident.id, ()), display)
        if not posts:
            continue  # nothing a user saw: no halt was posted (a held decision, a check that found nothing)
        resolved = posts[-1]["status"] == "resolved"
        published.append({
            "id": public_id(incident.id), "name": f"Trading interrupted on {incident.engine}",
            "status": posts[-1]["status"], "impact": "critical", "components": [incident.engine],
            "created_at": _iso(posts[0]["at"]), "updated_at": _iso(posts[-1]["at"]),
            "resolved_at": _iso(posts[-1]["at"]) if resolved else None,
            "updates": [{"status": p["status"], "body": p["body"], "created_at": _iso(p["at"])}
                        for p in reversed(posts)],
        })
    return {"page": {"name": name, "updated_at": _iso(now)},
            "status": {"indicator": worst, "description": DESCRIPTION[worst]},
            "components": components, "incidents": published}


def atom(document: Mapping[str, Any], url: str) -> bytes:
    """The same updates as an Atom feed (RFC 4287), newest first; `url` is where the feed is published."""
    page = document["page"]
    entries = sorted(((incident, update) for incident in document["incidents"] for update in incident["updates"]),
                     key=lambda pair: pair[1]["created_at"], reverse=True)
    lines = ['<?xml version="1.0" encoding="utf-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
             f"<title>{escape(page['name'])}</title>", f"<id>{escape(url)}</id>",
             f'<link rel="self" href="{escape(url)}"/>', f"<updated>{page['updated_at']}</updated>",
             "<author><name>" + escape(page["name"]) + "</name></author>"]
    for incident, update in entries:
        entry_id = f"{url}#{incident['id']}-{update['created_at']}-{update['status']}"
        lines += ["<entry>", f"<title>{escape(incident['name'])}: {escape(update['status'])}</title>",
                  f"<id>{escape(entry_id)}</id>", f"<updated>{update['created_at']}</updated>",
                  f"<content type=\"text\">{escape(update['body'])}</content>", "</entry>"]
    lines.append("</feed>")
    return ("\n".join(lines) + "\n").encode()
