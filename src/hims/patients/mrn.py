"""Medical record numbers: a 9-digit sequence number followed by a Luhn check digit."""

from __future__ import annotations

MRN_LENGTH = 10


def luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit for ``digits``."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def format_mrn(sequence_value: int) -> str:
    """The MRN for a value of ``patients_mrn_seq``: zero-padded to 9 digits plus the check digit."""
    body = f"{sequence_value:09d}"
    if len(body) != MRN_LENGTH - 1:
        raise ValueError("MRN sequence exhausted")
    return body + str(luhn_check_digit(body))


def is_valid_mrn(value: str) -> bool:
    """True for 10 digits whose last is the Luhn check digit of the first nine."""
    return (
        len(value) == MRN_LENGTH
        and value.isascii()
        and value.isdigit()
        and luhn_check_digit(value[:-1]) == int(value[-1])
    )
