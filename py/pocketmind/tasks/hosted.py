"""What the same items would cost through hosted small models, from their list prices (hosted_prices.json: dollars
per million input and output tokens, each with its date and source).

The token counts are this project's estimate, not the providers': the input is each item's zero-shot prompt as the
local model's tokenizer counts it, the output the longest label's tokens per item. Other tokenizers differ by
some tens of percent; the page and the CLI say so next to the figures.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def prices() -> dict:
    """The price list as shipped with the package."""
    return json.loads(resources.files(__package__).joinpath("hosted_prices.json").read_text(encoding="utf-8"))


def hosted_costs(n_items: int, input_tokens: int, output_tokens: int) -> list[dict]:
    """Each hosted model's cost in dollars for these items, and per million items at the same sizes (as numbers and
    as the text the page and the CLI show)."""
    if n_items <= 0:
        raise ValueError("no items to price")
    out = []
    for m in prices()["models"]:
        usd = (input_tokens * m["input_per_million"] + output_tokens * m["output_per_million"]) / 1e6
        per_million = usd / n_items * 1e6
        out.append({**m, "usd": usd, "usd_per_million_items": per_million, "usd_text": dollars(usd),
                    "per_million_items_text": dollars(per_million)})
    return out


def dollars(value: float) -> str:
    """Dollars: cents where they matter, two significant digits below a cent."""
    if value >= 0.01 or value <= 0:
        return f"${value:,.2f}"
    return f"${value:.{1 - math.floor(math.log10(value))}f}"
