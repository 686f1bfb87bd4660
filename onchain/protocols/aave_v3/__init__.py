"""Aave V3: bit-exact Python mirrors of the on-chain math (see `onchain.protocols.aave_v3.math`).

Submodules are deliberately not imported here so that importing the package stays cheap and
other modules of this package can be added independently.
"""
