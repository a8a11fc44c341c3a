"""The pure model: value types for everything on the wire, with no I/O (layer 0)."""
