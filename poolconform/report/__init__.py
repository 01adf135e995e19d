"""Reports built from records: summary.json, the terminal table, and the files under --out."""
