"""Training: SFT and online multi-turn RL from pinned lake snapshots (ASTRA part 3)."""
