"""Out-of-office auto-replies in text: telling one apart, and the date its sender is back.

Pure functions over a reply's subject and body. They decide only when Smartlead gave no category
for the reply (smartlead/effects.py): Smartlead's "Out Of Office" category, or any other, wins.
The rules are deliberately narrow (an auto-reply's stock phrases, a date written out or ISO), so
a person who writes "I'm travelling next week, call me after" is still a reply.
"""

from __future__ import annotations

import html
import re
import zoneinfo
from datetime import date, datetime, time, timedelta

from django.conf import settings

# A stated return date further out than this is not believed (a typo, a quoted year).
LONGEST_ABSENCE = timedelta(days=180)

SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autoreply|"
    r"out of (?:the )?office|ooo\b|abwesenheitsnotiz|réponse automatique|"
    r"respuesta automática|risposta automatica|afwezig)",
    re.IGNORECASE,
)
BODY = re.compile(
    r"\b(?:out of (?:the )?office|"
    r"(?:on|taking) (?:annual |parental |maternity |paternity |sick |medical )?leave\b|"
    r"on (?:vacation|holidays?|pto)\b|away from (?:the office|my desk|work)|"
    r"limited (?:access to|availability on) (?:my )?e-?mail|"
    r"(?:i am|i'm|i will be|i'll be) (?:currently )?(?:away|out|off|travell?ing)"
    r" (?:of the office|until|till|through|from|on|and)\b|"
    r"this is an auto(?:matic|mated)?[- ]?(?:reply|response|generated)|"
    r"abwesend|nicht im büro|absente? du bureau|fuera de la oficina)",
    re.IGNORECASE,
)
# Where the quoted thread starts: the email we sent may hold dates of its own.
QUOTE = re.compile(
    r"^\s*(?:>|-{2,}\s*original message|on .{4,200} wrote:|from:\s|le .{4,200} a écrit)",
    re.IGNORECASE | re.MULTILINE,
)
_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>20\d\d))?"
DATES = (
    re.compile(r"\b(?P<year>20\d\d)-(?P<month>[01]?\d)-(?P<day>[0-3]?\d)\b"),
    re.compile(rf"\b(?P<month>{_MONTHS})\.?\s+{_DAY}\b{_YEAR}", re.IGNORECASE),
    re.compile(rf"\b{_DAY}(?:\s+of)?\s+(?P<month>{_MONTHS})\b\.?{_YEAR}", re.IGNORECASE),
    # Numbers only with a year: 4/7/2025 (US, month first) and 07.04.2025 (day first).
    re.compile(r"\b(?P<month>[01]?\d)/(?P<day>[0-3]?\d)/(?P<year>20\d\d)\b"),
    re.compile(r"\b(?P<day>[0-3]?\d)\.(?P<month>[01]?\d)\.(?P<year>20\d\d)\b"),
)
WEEKDAY = re.compile(
    r"\b(?:until|till|through|back|returning|return)\s+(?:on\s+)?"
    r"(?P<weekday>monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
    re.IGNORECASE,
)
# Said right before the date, it is the first day back; otherwise the last day away.
BACK = re.compile(r"\b(?:back|return(?:ing|s)?|in the office)\b[^.\n]{0,30}$", re.IGNORECASE)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def plain(text: str) -> str:
    """A reply as plain text, without the thread it quotes."""
    if "<" in text and ">" in text:
        text = re.sub(r"<(?:br|/p|/div)\b[^>]*>", "\n", text, flags=re.IGNORECASE)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    quoted = QUOTE.search(text)
    return text[: quoted.start()] if quoted else text


def looks_out_of_office(subject: str, body: str) -> bool:
    return bool(SUBJECT.search(subject or "") or BODY.search(plain(body or "")))


def return_day(body: str, replied: date) -> date | None:
    """The first day the sender is back, as the text states it; None when it states none. Of
    several dates ("from 24 March until 7 April") the latest counts; dates before the reply
    (quoted, or the start of the absence) and past LONGEST_ABSENCE do not."""
    text = plain(body or "")
    found: list[tuple[date, bool]] = []
    for pattern in DATES:
        for match in pattern.finditer(text):
            day = _date(match, replied)
            if day is not None and replied < day <= replied + LONGEST_ABSENCE:
                before = text[max(0, match.start() - 40) : match.start()]
                found.append((day, bool(BACK.search(before))))
    weekday = WEEKDAY.search(text)
    if not found and weekday is not None:
        ahead = (_WEEKDAYS.index(weekday["weekday"].lower()) - replied.weekday() - 1) % 7 + 1
        said = weekday.group(0).lower().startswith(("back", "return"))
        found.append((replied + timedelta(days=ahead), said))
    if not found:
        return None
    day, first_day_back = max(found)
    return day if first_day_back else day + timedelta(days=1)


def resume_at(subject: str, body: str, replied: datetime) -> tuple[datetime, bool]:
    """When an absence that began with this reply ends: the start of the day the sender is
    back, in the campaigns' schedule timezone, or SMARTLEAD_OUT_OF_OFFICE_DAYS after the reply
    when the text gives no date. The flag says whether the text gave the date."""
    zone = zoneinfo.ZoneInfo(settings.SMARTLEAD_SCHEDULE_TIMEZONE)
    local = replied.astimezone(zone)
    back = return_day(f"{subject}\n{body}", local.date())
    if back is None:
        return replied + timedelta(days=settings.SMARTLEAD_OUT_OF_OFFICE_DAYS), False
    return datetime.combine(back, time.min, tzinfo=zone), True


def _date(match: re.Match[str], replied: date) -> date | None:
    parts = match.groupdict()
    month = parts["month"]
    number = int(month) if month.isdigit() else _month(month)
    try:
        if parts.get("year"):
            return date(int(parts["year"]), number, int(parts["day"]))
        # No year: its next occurrence after the reply.
        day = date(replied.year, number, int(parts["day"]))
        return day if day > replied else date(replied.year + 1, number, int(parts["day"]))
    except ValueError:
        return None  # 31 April, month 13


def _month(name: str) -> int:
    prefix = name[:3].lower()
    return ("jan feb mar apr may jun jul aug sep oct nov dec".split()).index(prefix) + 1
