"""The shells between protocols and risk: one reader (pin, load, discover, read), risk inputs, targets, stress."""
