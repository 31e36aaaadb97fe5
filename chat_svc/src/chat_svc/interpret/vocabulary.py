"""The words the grammar knows: numbers, ordinals, weekdays, months, verbs; lower case, immutable."""

from __future__ import annotations

NUMBER_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90, "couple": 2, "a couple of": 2, "couple of": 2,
}  # fmt: skip
NUMBER_PATTERN = r"\d{1,4}|a couple of|couple of|forty-five|" + "|".join(
    sorted((w for w in NUMBER_WORDS if " " not in w and w != "forty-five"), key=len, reverse=True)
)

ORDINAL_WORDS: dict[str, int] = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
    "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
    "twenty-first": 21, "twenty-second": 22, "twenty-third": 23, "thirty-first": 31, "other": 2,
}  # fmt: skip
ORDINAL_WORD_PATTERN = "|".join(sorted((w for w in ORDINAL_WORDS if w != "other"), key=len, reverse=True))
DAY_ORDINAL_PATTERN = r"\d{1,2}(?:st|nd|rd|th)|" + ORDINAL_WORD_PATTERN
"""A day of the month written as an ordinal: "3rd", "21st", "third"."""

WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "wed": 2, "thursday": 3,
    "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}  # fmt: skip
WEEKDAY_PATTERN = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
MONTH_PATTERN = "|".join(sorted(MONTHS, key=len, reverse=True))

UNIT_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}

IRREGULAR_PAST = frozenset(
    [
        "paid",
        "bought",
        "brought",
        "sent",
        "did",
        "wrote",
        "took",
        "made",
        "went",
        "got",
        "gave",
        "fed",
        "met",
        "ran",
        "rang",
        "sang",
        "drove",
        "ate",
        "drank",
        "swam",
        "spoke",
        "told",
        "sold",
        "found",
        "kept",
        "left",
        "won",
        "built",
        "caught",
        "taught",
        "saw",
        "came",
        "held",
        "hung",
        "flew",
        "threw",
        "wore",
        "chose",
        "froze",
        "spent",
        "lent",
        "swept",
        "slept",
        "heard",
        "said",
        "stood",
        "understood",
        "dug",
        "fixed",
        "sorted",
        "finished",
        "completed",
        "done",
    ]
)
"""Past tenses that start a report of something done ("paid the rent")."""
AMBIGUOUS_PAST = frozenset(["read", "put", "cut", "set", "let", "hit", "shut", "quit", "spread"])
"""Past tenses spelled like the present: a report of something done only after "I" ("I read the report")."""
NOT_PAST = frozenset(["shred", "bed", "red", "wed", "embed", "bred", "sled"])

ARTICLES = frozenset(["the", "my", "our", "a", "an", "this", "that", "your", "these", "those"])
PREVIOUS_WORDS = frozenset(
    ["it", "that", "this", "them", "this one", "that one", "those", "these", "the last one", "the previous one"]
)
TARGET_TRAILERS = frozenset(["task", "tasks", "todo", "todos", "item", "items", "one", "reminder", "reminders"])
FILLER_WORDS = frozenset(
    ["please", "already", "now", "yet", "today", "too", "again", "also", "just", "actually", "finally"]
)
