"""The second agent evaluation's tools and tasks: plain functions from other domains, written the way users write them.

Library records and a shop (JSON-returning lookups), forecasts, exchange rates, unit conversions,
calendar dates, arithmetic. Nothing here knows about tokentrail: each tool is a typed function
with a docstring, as a user passes it to `Agent(backend, tools=[...])`. Names are matched without
case, accents kept ("Valparaíso"), so a model that writes a name as the task does finds it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

BOOKS = {
    "night harbor": {"title": "Night Harbor", "author": "Mirela Voss", "year": 2011, "pages": 352, "copies_available": 3},
    "the copper orchard": {"title": "The Copper Orchard", "author": "Tomasz Wilk", "year": 1987, "pages": 412,
                           "copies_available": 0},
    "salt and sparrows": {"title": "Salt and Sparrows", "author": "Adaeze Okafor", "year": 1998, "pages": 276,
                          "copies_available": 5},
    "el jardín de ceniza": {"title": "El jardín de ceniza", "author": "Lucía Ferrer", "year": 2019, "pages": 198,
                            "copies_available": 2},
}
FORECASTS = {
    "bergen": {"city": "Bergen", "high_c": 9, "low_c": 4, "rain_chance_percent": 80},
    "valparaíso": {"city": "Valparaíso", "high_c": 19, "low_c": 12, "rain_chance_percent": 5},
    "tokyo": {"city": "Tokyo", "high_c": 14, "low_c": 7, "rain_chance_percent": 30},
    "nairobi": {"city": "Nairobi", "high_c": 26, "low_c": 15, "rain_chance_percent": 45},
}
PRICES_EUR = {"desk lamp": 34.5, "kettle": 27.0, "toaster": 41.25, "office chair": 189.0, "notebook": 3.8}
RATES = {("EUR", "USD"): 1.08, ("EUR", "JPY"): 162.4, ("USD", "EUR"): 0.926, ("GBP", "EUR"): 1.17, ("EUR", "GBP"): 0.855}
UNITS = {  # unit -> (quantity, factor to the quantity's base unit)
    "km": ("length", 1000.0), "kilometers": ("length", 1000.0), "kilometres": ("length", 1000.0),
    "m": ("length", 1.0), "meters": ("length", 1.0), "metres": ("length", 1.0),
    "mi": ("length", 1609.344), "miles": ("length", 1609.344), "ft": ("length", 0.3048), "feet": ("length", 0.3048),
    "kg": ("mass", 1.0), "kilograms": ("mass", 1.0), "lb": ("mass", 0.45359237), "pounds": ("mass", 0.45359237),
    "l": ("volume", 1.0), "liters": ("volume", 1.0), "litres": ("volume", 1.0),
    "gal": ("volume", 3.785411784), "gallons": ("volume", 3.785411784),
}


def _key(text: str) -> str:
    return " ".join(text.strip().strip("'\"").lower().split())


def find_book(title: str) -> dict[str, Any]:
    """Look up a book in the library catalogue by its title: author, year, pages and copies available."""
    book = BOOKS.get(_key(title))
    if book is None:
        raise KeyError(f"no book titled {title!r}; the catalogue has: {', '.join(b['title'] for b in BOOKS.values())}")
    return book


def get_forecast(city: str) -> dict[str, Any]:
    """Tomorrow's forecast for a city: high and low temperature in degrees Celsius and the chance of rain."""
    forecast = FORECASTS.get(_key(city))
    if forecast is None:
        raise KeyError(f"no forecast for {city!r}")
    return forecast


def product_price(product: str) -> float:
    """The shop's price of a product, in euros."""
    key = _key(product)
    price = PRICES_EUR.get(key, PRICES_EUR.get(key.removesuffix("s")))
    if price is None:
        raise KeyError(f"the shop does not sell {product!r}; it sells: {', '.join(PRICES_EUR)}")
    return price


def exchange_rate(from_currency: str, to_currency: str) -> float:
    """How many units of to_currency one unit of from_currency buys (ISO codes such as EUR, USD, JPY)."""
    rate = RATES.get((from_currency.strip().upper(), to_currency.strip().upper()))
    if rate is None:
        raise KeyError(f"no rate from {from_currency} to {to_currency}")
    return rate


def convert_units(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a value between units of length (km, m, mi, ft), mass (kg, lb), volume (l, gal) or temperature (C, F)."""
    source, target = from_unit.strip().lower(), to_unit.strip().lower()
    celsius, fahrenheit = {"c", "celsius", "°c"}, {"f", "fahrenheit", "°f"}
    if source in celsius and target in fahrenheit:
        return round(value * 9 / 5 + 32, 2)
    if source in fahrenheit and target in celsius:
        return round((value - 32) * 5 / 9, 2)
    if source not in UNITS or target not in UNITS or UNITS[source][0] != UNITS[target][0]:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return round(value * UNITS[source][1] / UNITS[target][1], 3)


def days_between(start: str, end: str) -> int:
    """The number of days from the start date to the end date (dates as YYYY-MM-DD)."""
    return (dt.date.fromisoformat(end.strip()) - dt.date.fromisoformat(start.strip())).days


def add_days(date: str, days: int) -> str:
    """The date a number of days after a date (YYYY-MM-DD; negative days go back)."""
    return (dt.date.fromisoformat(date.strip()) + dt.timedelta(days=days)).isoformat()


def weekday(date: str) -> str:
    """The day of the week of a date (YYYY-MM-DD)."""
    return dt.date.fromisoformat(date.strip()).strftime("%A")


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def subtract(a: float, b: float) -> float:
    """Subtract b from a."""
    return a - b


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


TOOLS = [find_book, get_forecast, product_price, exchange_rate, convert_units, days_between, add_days, weekday,
         add, subtract, multiply]

# (task, acceptable answers: numbers to the decimals given, whole words without case)
LOOKUPS = [
    ("Who wrote the book 'Night Harbor'?", ["Mirela Voss"]),
    ("How many pages does 'The Copper Orchard' have?", [412]),
    ("In which year was 'Salt and Sparrows' published?", [1998]),
    ("Are there copies of 'The Copper Orchard' available to borrow right now?", ["no", "0", "none", "not"]),
    ("What will the high temperature be in Valparaíso tomorrow?", [19]),
    ("What is the chance of rain in Bergen tomorrow?", [80]),
    ("How much does a kettle cost in the shop?", [27]),
    ("What is the exchange rate from euros to Japanese yen?", [162.4]),
    ("¿Quién escribió 'El jardín de ceniza'?", ["Lucía Ferrer", "Lucia Ferrer"]),
]
CONVERSIONS = [
    ("Convert 42 kilometres to miles.", [26.1]),
    ("How many pounds is 70 kg?", [154.3]),
    ("What is 30 degrees Celsius in Fahrenheit?", [86]),
    ("How many feet are in 250 metres?", [820.2]),
    ("How many litres are 12 gallons?", [45.4]),
]
DATES = [
    ("What day of the week is 2027-03-15?", ["Monday"]),
    ("What date is 90 days after 2026-11-30?", ["2027-02-28"]),
    ("How many days are there from 2026-01-01 to 2026-12-25?", [358]),
    ("What date was 45 days before 2026-12-01?", ["2026-10-17"]),
]
CHAINS = [
    ("How much do 3 desk lamps cost in the shop, in euros?", [103.5]),
    ("What does a toaster from the shop cost in US dollars?", [44.55]),
    ("What will tomorrow's high in Bergen be in Fahrenheit?", [48.2]),
    ("How many pages do 'Night Harbor' and 'Salt and Sparrows' have together?", [628]),
    ("How many more pages does 'The Copper Orchard' have than 'Night Harbor'?", [60]),
    ("How many degrees apart are tomorrow's high and low in Nairobi?", [11]),
    ("How many years after 'The Copper Orchard' was 'Night Harbor' published?", [24]),
    ("What day of the week will it be 100 days after 2026-12-01?", ["Thursday"]),
    ("What do 2 kettles and a toaster cost together in the shop, in euros?", [95.25]),
    ("What does an office chair from the shop cost in Japanese yen?", [30693.6]),
    ("How much do 4 notebooks cost in US dollars?", [16.42]),
]
NO_TOOL = [
    ("What is the capital of Japan?", ["Tokyo"]),
    ("How many minutes are there in two hours?", [120]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("Translate 'thank you' into French.", ["merci"]),
    ("¿Cuál es la capital de Francia?", ["París", "Paris"]),
]
GROUPS = {"lookup": LOOKUPS, "conversion": CONVERSIONS, "date": DATES, "chain": CHAINS, "no tool": NO_TOOL}
