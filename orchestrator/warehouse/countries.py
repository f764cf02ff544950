"""Country names used by the UCI Online Retail dataset -> ISO 3166-1 alpha-2 codes.

The dataset records the customer's country as a free English name with a few quirks
(``EIRE``, ``RSA``, ``USA``). The warehouse stores the ISO 3166-1 alpha-2 code (source: ISO 3166
Maintenance Agency, https://www.iso.org/iso-3166-country-codes.html) beside the name as
recorded, so per-country rules (EU member state, UK GDPR, ...) compare codes, not spellings.

Names that do not identify one country map to ``None``:

- ``Channel Islands``: Jersey (JE) and Guernsey (GG) are separate codes and the name does not say
  which; neither is in the EU.
- ``European Community``: not a country.
- ``Unspecified``: unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

#: Every country name of the full UCI Online Retail dataset (38 names) -> alpha-2 code or None.
#: Read-only on purpose (no module-level mutable state).
DATASET_COUNTRY_CODES: Mapping[str, str | None] = MappingProxyType(
    {
        "Australia": "AU",
        "Austria": "AT",
        "Bahrain": "BH",
        "Belgium": "BE",
        "Brazil": "BR",
        "Canada": "CA",
        "Channel Islands": None,
        "Cyprus": "CY",
        "Czech Republic": "CZ",
        "Denmark": "DK",
        "EIRE": "IE",
        "European Community": None,
        "Finland": "FI",
        "France": "FR",
        "Germany": "DE",
        "Greece": "GR",
        "Hong Kong": "HK",
        "Iceland": "IS",
        "Israel": "IL",
        "Italy": "IT",
        "Japan": "JP",
        "Lebanon": "LB",
        "Lithuania": "LT",
        "Malta": "MT",
        "Netherlands": "NL",
        "Norway": "NO",
        "Poland": "PL",
        "Portugal": "PT",
        "RSA": "ZA",
        "Saudi Arabia": "SA",
        "Singapore": "SG",
        "Spain": "ES",
        "Sweden": "SE",
        "Switzerland": "CH",
        "USA": "US",
        "United Arab Emirates": "AE",
        "United Kingdom": "GB",
        "Unspecified": None,
    }
)


def unmapped_country_names(names: Iterable[str | None]) -> list[str]:
    """Return the names (sorted, without duplicates) that :data:`DATASET_COUNTRY_CODES` does not
    know. ``None`` (no country recorded) is never reported."""
    return sorted({n for n in names if n is not None and n not in DATASET_COUNTRY_CODES})
