"""ddtse: target speech extraction."""
