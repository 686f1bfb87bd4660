"""Protocol-specific logic (one subpackage per lending protocol), mirrored from the contracts."""
