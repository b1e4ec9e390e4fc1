"""Rewrite zoo/card.schema.json from the card types in zoo/cards.py (run after changing them; a test checks
that the checked-in file is what the types say)."""

import json

from zoo.cards import SCHEMA_FILE, json_schema

if __name__ == "__main__":
    SCHEMA_FILE.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {SCHEMA_FILE}")
